"""``manage.py backfill_signatures`` and ``manage.py retry_signatures``.

Run through ``call_command`` against a real docker-registry on loopback and the local
KMS. Images are recorded in Signet by ``registry.services.sync_instance`` (existing
images: a policy does not sign them until asked).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from kms import services as kms_services
from kms.models import AuthorizedService
from registry import services as registry_services
from registry.client import OCI_MANIFEST, RegistryClient
from registry.models import Instance, Manifest, Tag
from signing import services
from signing.models import Signature, SignatureStatus, SigningPolicy, Trigger
from signing.payload import signature_tag
from tests.factories import make_key
from tests.support.oci import build_image, canonical_json, push_image, push_index

pytestmark = [pytest.mark.django_db, pytest.mark.registry_server]

DEAD_BACKEND = "http://127.0.0.1:9"


def push_many(client: RegistryClient, repository: str, count: int, *, prefix: str = "t") -> None:
    """``count`` distinct tiny images sharing one config and layer (differ by annotation)."""
    image = build_image(seed=repository)
    client.upload_blob(repository, image.config)
    client.upload_blob(repository, image.layer)
    base = json.loads(image.manifest)
    for number in range(count):
        manifest = {**base, "annotations": {"org.signet.test.n": str(number)}}
        client.put_manifest(repository, f"{prefix}{number}", canonical_json(manifest), OCI_MANIFEST)


@pytest.fixture
def registry_server(registry_server_factory, tmp_path_factory):
    """The real registry, with its storage on tmpfs when there is one (3x faster writes:
    the batch test signs 300 images, ten registry requests each)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        workdir = Path(tempfile.mkdtemp(prefix="signet-registry-", dir=shm))
        try:
            yield registry_server_factory(workdir=workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    else:
        yield registry_server_factory()


@pytest.fixture
def instance(db, registry_server) -> Instance:
    instance, _token = registry_services.create_instance(
        name="prod", backend_url=registry_server.url, default_domain=registry_server.host
    )
    kms_services.grant_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)
    return instance


@pytest.fixture
def key():
    return make_key("signer")


def sync(instance: Instance) -> None:
    result = registry_services.sync_instance(instance=instance)
    assert not result.errors


def make_policy(instance: Instance, namespace: str, key) -> SigningPolicy:
    ns = instance.namespaces.get(name=namespace)
    return services.create_policy(namespace=ns, name=f"{namespace}-policy", key=key).policy


def backfill(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("backfill_signatures", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def has_sig(client: RegistryClient, manifest: Manifest) -> bool:
    tag = signature_tag(manifest.digest)
    return client.head_manifest(manifest.repository.name, tag) is not None


@pytest.fixture
def images(instance, key, registry_client) -> dict[str, Any]:
    """team: app v1 v2 + multi:latest (index of 2); other (no policy): tool v1."""
    push_image(registry_client, "team/app", "v1", seed="a1")
    push_image(registry_client, "team/app", "v2", seed="a2")
    push_image(registry_client, "team/app", "also-v2", seed="a2")  # same digest as v2
    push_index(registry_client, "team/multi", "latest", seed="multi")
    push_image(registry_client, "other/tool", "v1", seed="t1")
    sync(instance)
    policy = make_policy(instance, "team", key)
    return {"policy": policy}


def signed_manifests() -> set[int]:
    return set(
        Signature.objects.filter(status=SignatureStatus.SIGNED).values_list(
            "manifest_id", flat=True
        )
    )


# --- backfill -------------------------------------------------------------------------------


def test_a_dry_run_counts_and_changes_nothing(images, registry_client):
    out, _ = backfill("--instance", "prod", "--dry-run")

    assert "5 image(s) covered by a signing policy, 1 skipped (no policy: other)" in out
    assert "Dry run: 5 would be signed, 0 already signed, 1 skipped (no policy)." in out
    assert Signature.objects.count() == 0
    assert not any(has_sig(registry_client, m) for m in Manifest.objects.all())


def test_it_signs_every_covered_image_including_index_children_then_reports_all_signed(
    images, registry_client
):
    team = Manifest.objects.filter(repository__namespace__name="team")
    assert team.count() == 5  # app v1, app v2 (two tags), multi index + 2 children

    out, _ = backfill("--instance", "prod")

    assert "Done in" in out
    assert "5 signed, 0 already signed, 0 failed, 1 skipped (no policy)." in out
    assert signed_manifests() == set(team.values_list("pk", flat=True))
    assert set(Signature.objects.values_list("trigger", flat=True)) == {Trigger.BACKFILL}
    assert all(has_sig(registry_client, m) for m in team.select_related("repository"))
    tool = Manifest.objects.select_related("repository").get(repository__name="other/tool")
    assert not has_sig(registry_client, tool)

    again, _ = backfill("--instance", "prod")

    assert "0 signed, 5 already signed, 0 failed, 1 skipped (no policy)." in again
    assert Signature.objects.count() == 5


def test_it_resumes_where_a_previous_run_or_manual_signing_left_off(images):
    v1 = Tag.objects.get(repository__name="team/app", name="v1").manifest
    services.request_signing(manifests=[v1])

    out, _ = backfill("--instance", "prod", "--dry-run")
    assert "Dry run: 4 would be signed, 1 already signed" in out

    out, _ = backfill("--instance", "prod")
    assert "4 signed, 1 already signed, 0 failed" in out


def test_it_re_signs_images_signed_with_a_previous_policy_key(images, registry_client):
    backfill("--instance", "prod")
    new_key = make_key("signer-2")
    services.update_policy(policy=images["policy"], key=new_key)

    out, _ = backfill("--instance", "prod", "--namespace", "team")

    assert "5 signed, 0 already signed" in out
    assert set(Signature.objects.values_list("key_id", flat=True)) == {new_key.key_id}


def test_after_a_domain_change_the_dry_run_and_the_run_re_sign_everything(images):
    backfill("--instance", "prod")
    services.update_policy(policy=images["policy"], domain=images["policy"].domain)
    assert "0 would be signed, 5 already signed" in backfill("--instance", "prod", "--dry-run")[0]
    instance = images["policy"].namespace.instance
    registry_services.update_instance(instance=instance, custom_domains=["registry.example.com"])
    services.update_policy(policy=images["policy"], domain="registry.example.com")

    dry, _ = backfill("--instance", "prod", "--dry-run")
    out, _ = backfill("--instance", "prod")

    assert "Dry run: 5 would be signed, 0 already signed" in dry
    assert "5 signed, 0 already signed" in out
    assert set(Signature.objects.values_list("docker_reference", flat=True)) == {
        "registry.example.com/team/app",
        "registry.example.com/team/multi",
    }


def test_it_limits_itself_to_a_namespace_or_a_repository(images, instance, key):
    make_policy(instance, "other", key)

    out, _ = backfill("--instance", "prod", "--namespace", "team", "--repository", "app")
    assert "2 signed, 0 already signed, 0 failed, 0 skipped" in out
    assert set(
        Manifest.objects.filter(pk__in=signed_manifests()).values_list(
            "repository__name", flat=True
        )
    ) == {"team/app"}

    out, _ = backfill("--instance", str(instance.pk), "--repository", "other/tool")
    assert "1 signed, 0 already signed" in out

    out, _ = backfill("--instance", "prod", "--namespace", "team")
    assert "3 signed, 2 already signed" in out


def test_it_signs_in_batches_streamed_from_the_database(instance, key, registry_client):
    push_many(registry_client, "team/bulk", 300)
    sync(instance)
    make_policy(instance, "team", key)

    out, _ = backfill("--instance", "prod", "--batch-size", "50")

    progress = [line for line in out.splitlines() if line.startswith("batch ")]
    assert len(progress) == 6
    assert progress[0].startswith("batch 1: 50/300 images (50 signed, 0 already signed, 0 failed)")
    assert progress[-1].startswith("batch 6: 300/300 images (300 signed")
    assert all(re.search(r"\d+\.\d signed/s$", line) for line in progress)
    assert "300 signed, 0 already signed, 0 failed, 0 skipped" in out
    assert Signature.objects.filter(status=SignatureStatus.SIGNED).count() == 300


def test_the_default_batch_is_200_images():
    from signing.management.commands.backfill_signatures import Command

    parser = Command().create_parser("manage.py", "backfill_signatures")

    assert parser.parse_args(["--instance", "prod"]).batch_size == 200
    assert parser.parse_args(["--instance", "prod", "--batch-size", "7"]).batch_size == 7


def test_it_exits_non_zero_when_the_registry_is_unreachable_and_a_rerun_finishes(
    images, instance, registry_client
):
    Instance.objects.filter(pk=instance.pk).update(backend_url=DEAD_BACKEND)
    out, err = StringIO(), StringIO()

    with pytest.raises(CommandError) as caught:
        call_command(
            "backfill_signatures",
            "--instance",
            "prod",
            "--repository",
            "team/app",
            stdout=out,
            stderr=err,
        )

    assert str(caught.value) == (
        "2 image(s) failed to sign; they are retried by `manage.py retry_signatures`, "
        "or run this command again."
    )
    assert "0 signed, 0 already signed, 2 failed" in out.getvalue()
    assert err.getvalue().count("failed: team/app@sha256:") == 2
    assert "registry prod" in err.getvalue() and "could not connect" in err.getvalue()
    assert set(Signature.objects.values_list("status", flat=True)) == {SignatureStatus.FAILED}

    Instance.objects.filter(pk=instance.pk).update(backend_url=registry_client.base_url)
    again, _ = backfill("--instance", "prod", "--repository", "team/app")

    assert "2 signed, 0 already signed, 0 failed" in again
    assert set(Signature.objects.values_list("status", flat=True)) == {SignatureStatus.SIGNED}


def test_a_disabled_key_fails_the_backfill_with_the_kms_reason(images, key):
    kms_services.disable_key(key_id=key.key_id)
    err = StringIO()

    with pytest.raises(CommandError, match="5 image"):
        call_command("backfill_signatures", "--instance", "prod", stdout=StringIO(), stderr=err)

    assert "is disabled" in err.getvalue().lower() or "Disabled" in err.getvalue()
    assert Signature.objects.filter(status=SignatureStatus.FAILED).count() == 5


def test_a_namespace_without_policy_is_only_counted_as_skipped(instance, key, registry_client):
    push_image(registry_client, "other/tool", "v1", seed="t1")
    sync(instance)

    out, _ = backfill("--instance", "prod")

    assert "0 image(s) covered by a signing policy, 1 skipped (no policy: other)" in out
    assert "0 signed, 0 already signed, 0 failed, 1 skipped (no policy)." in out
    assert Signature.objects.count() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--instance", "nowhere"], "No registry instance 'nowhere'. Known instances: prod."),
        (["--instance", "prod", "--namespace", "ghost"], "Instance prod has no namespace 'ghost'."),
        (
            ["--instance", "prod", "--repository", "app"],
            "--repository 'app' needs --namespace, or give its full path (namespace/name).",
        ),
        (
            ["--instance", "prod", "--namespace", "team", "--repository", "other/tool"],
            "Instance prod has no tagged image in repository 'team/other/tool'.",
        ),
        (
            ["--instance", "prod", "--namespace", "team", "--repository", "ghost"],
            "Instance prod has no tagged image in repository 'team/ghost'.",
        ),
        (
            ["--instance", "prod", "--batch-size", "0"],
            "argument --batch-size: must be a positive integer, not '0'",
        ),
        (
            ["--instance", "prod", "--wait", "forever"],
            "argument --wait: must be a number of seconds from 0 to 3600, not 'forever'",
        ),
    ],
)
def test_it_refuses_a_bad_scope_with_a_precise_message(images, args, message):
    with pytest.raises(CommandError) as caught:
        backfill(*args)

    assert message in str(caught.value)
    assert Signature.objects.count() == 0


def test_the_instance_is_required(images):
    with pytest.raises(CommandError, match="--instance"):
        backfill()


# --- retry_signatures -----------------------------------------------------------------------


def retry(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("retry_signatures", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def failed(images, key) -> list[Signature]:
    """The two team/app signatures, failed (the key was disabled while signing)."""
    kms_services.disable_key(key_id=key.key_id)
    manifests = list(Manifest.objects.filter(repository__name="team/app"))
    services.request_signing(manifests=manifests)
    kms_services.enable_key(key_id=key.key_id)
    rows = list(Signature.objects.filter(status=SignatureStatus.FAILED))
    assert len(rows) == 2
    return rows


def _make_due() -> None:
    Signature.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_retry_waits_for_the_backoff_then_signs_the_failed_rows(failed, registry_client):
    out, _ = retry()
    assert "Retried 0 signature(s)" in out
    assert "2 failed signature(s) wait for their next attempt" in out

    _make_due()
    out, err = retry()

    assert "Retried 2 signature(s): 2 signed, 0 failed, 0 skipped" in out
    assert "0 failed signature(s) wait" in out
    assert err == ""
    assert {s.status for s in Signature.objects.all()} == {SignatureStatus.SIGNED}
    for row in Signature.objects.select_related("manifest__repository"):
        assert has_sig(registry_client, row.manifest)


def test_retry_respects_the_limit(failed):
    _make_due()

    out, _ = retry("--limit", "1")

    assert "Retried 1 signature(s): 1 signed" in out
    assert Signature.objects.filter(status=SignatureStatus.FAILED).count() == 1


def test_retry_prints_failures_and_exits_zero_unless_asked(failed, key):
    kms_services.disable_key(key_id=key.key_id)
    _make_due()

    out, err = retry()

    assert "2 failed" in out
    assert err.count("failed: team/app@sha256:") == 2
    attempts = set(Signature.objects.values_list("attempts", flat=True))
    assert attempts == {2}

    _make_due()
    with pytest.raises(CommandError, match=r"^2 signature\(s\) failed again\.$"):
        retry("--fail-on-error")


def test_retry_runs_pending_artifact_removals(
    images, instance, registry_client, django_capture_on_commit_callbacks
):
    backfill("--instance", "prod", "--repository", "team/app")
    manifest = (
        Manifest.objects.select_related("repository").filter(repository__name="team/app").first()
    )
    assert has_sig(registry_client, manifest)
    Instance.objects.filter(pk=instance.pk).update(backend_url=DEAD_BACKEND)
    with django_capture_on_commit_callbacks(execute=True):
        services.delete_policy(policy=images["policy"])
    Instance.objects.filter(pk=instance.pk).update(backend_url=registry_client.base_url)
    from signing.models import ArtifactCleanup

    assert ArtifactCleanup.objects.count() == 2
    ArtifactCleanup.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))

    out, _ = retry()

    assert "0 artifact removal(s) pending" in out
    assert ArtifactCleanup.objects.count() == 0
    assert not has_sig(registry_client, manifest)

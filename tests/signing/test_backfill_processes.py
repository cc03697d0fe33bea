"""Backfills as separate OS processes, sharing the database with other writers (issue #13).

Each test runs ``manage.py backfill_signatures`` with ``subprocess`` against the test's own
database (the SQLite file under .local/, or the PostgreSQL test database), a real
docker-registry on tmpfs and the local KMS, while another writer works: the webhook of the
live server recording (and signing) real pushes, a second backfill of the same scope, or a
second backfill of another namespace. On SQLite the old backfill held a read transaction
across its batches and died with "database is locked" the moment anything else committed.

Slow by nature (processes start Django, a few hundred images are signed): marked
``processes``; deselect with ``-m "not processes"`` for a quick run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from django.conf import settings

from kms import services as kms_services
from kms.models import AuthorizedService, Key
from registry import services as registry_services
from registry.client import OCI_MANIFEST, RegistryClient
from registry.models import Instance, Manifest
from signing import services
from signing.dispatch import wait_for_background_work
from signing.models import Signature, SignatureStatus
from signing.payload import signature_tag
from tests.factories import make_key
from tests.signing.conftest import layer_fingerprints
from tests.support import live_signet
from tests.support.live_signet import signet_url
from tests.support.oci import build_image, canonical_json
from tests.support.registry_fixtures import database_url

pytestmark = [
    pytest.mark.registry_server,
    pytest.mark.processes,
    pytest.mark.django_db(transaction=True),
]

# Several pages per backfill: the old code's read transaction spanned them.
BATCH = "20"
IMAGES = 150
PROCESS_TIMEOUT = 120


# --- processes ------------------------------------------------------------------------------


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


class Backfill:
    """``manage.py backfill_signatures`` in its own process, on the test's database."""

    def __init__(self, *args: str) -> None:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings_test",
            "DATABASE_URL": database_url(),
            "PYTHONPATH": str(settings.BASE_DIR),
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "backfill_signatures",
                "--instance",
                "prod",
                "--batch-size",
                BATCH,
                *args,
            ],
            cwd=settings.BASE_DIR,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self) -> Run:
        stdout, stderr = self.process.communicate(timeout=PROCESS_TIMEOUT)
        return Run(self.process.returncode, stdout, stderr)

    def kill(self) -> None:
        if self.running():
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def start_backfill() -> Iterator[Callable[..., Backfill]]:
    started: list[Backfill] = []

    def start(*args: str) -> Backfill:
        started.append(Backfill(*args))
        return started[-1]

    yield start
    for backfill in started:
        backfill.kill()


# --- registry and images --------------------------------------------------------------------


def push_many(client: RegistryClient, repository: str, count: int, *, prefix: str = "t") -> None:
    """``count`` distinct tiny images sharing one config and layer (differ by annotation)."""
    image = build_image(seed=repository)
    client.upload_blob(repository, image.config)
    client.upload_blob(repository, image.layer)
    base = json.loads(image.manifest)
    for number in range(count):
        manifest = {**base, "annotations": {"org.signet.test.n": f"{prefix}{number}"}}
        client.put_manifest(repository, f"{prefix}{number}", canonical_json(manifest), OCI_MANIFEST)


@dataclass
class Setup:
    instance: Instance
    client: RegistryClient
    key: Key


def _policy(instance: Instance, namespace: str, key: Key) -> None:
    ns = instance.namespaces.get(name=namespace)
    services.create_policy(namespace=ns, name=f"{namespace}-policy", key=key)


@pytest.fixture
def synced(db, tmpfs_registry) -> Iterator[Setup]:
    """Instance ``prod`` on a real registry; images are recorded by ``sync_instance``."""
    server = tmpfs_registry()
    instance, _ = registry_services.create_instance(
        name="prod", backend_url=server.url, default_domain=server.host
    )
    kms_services.grant_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)
    client = RegistryClient(server.url, backoff=0.05)
    yield Setup(instance, client, make_key("signer"))
    client.close()


def sync(setup: Setup) -> None:
    assert not registry_services.sync_instance(instance=setup.instance).errors


# --- what every scenario must end with -------------------------------------------------------


def assert_signed_once(setup: Setup, manifests: list[Manifest]) -> None:
    """Every image has one signed row (the KMS signed it once) and one ``.sig`` layer for
    the key, and the row names the ``.sig`` the registry holds."""
    rows = {
        row.manifest_id: row
        for row in Signature.objects.filter(manifest__in=manifests).select_related("manifest")
    }
    assert len(rows) == len(manifests), f"{len(manifests) - len(rows)} image(s) without a row"
    unsigned = [r.manifest.digest for r in rows.values() if r.status != SignatureStatus.SIGNED]
    assert not unsigned, f"{len(unsigned)} row(s) not signed: {unsigned[:3]}"
    assert {r.attempts for r in rows.values()} == {1}, "an image was signed more than once"
    fingerprint = setup.key.public_key_fingerprint
    for manifest in manifests:
        repository, row = manifest.repository.name, rows[manifest.pk]
        assert layer_fingerprints(setup.client, repository, manifest.digest) == [fingerprint]
        published = setup.client.head_manifest(repository, signature_tag(manifest.digest))
        assert published is not None, f"no signature published for {manifest.digest}"
        assert published.digest == row.sig_manifest_digest


def assert_no_pending_row_is_published(setup: Setup) -> None:
    for row in Signature.objects.exclude(status=SignatureStatus.SIGNED).select_related(
        "manifest__repository"
    ):
        sig = signature_tag(row.manifest.digest)
        assert setup.client.head_manifest(row.manifest.repository.name, sig) is None, row


def signed_in(namespace: str) -> int:
    return Signature.objects.filter(
        status=SignatureStatus.SIGNED, manifest__repository__namespace__name=namespace
    ).count()


def assert_succeeded(run: Run) -> None:
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout}\n{run.stderr}"
    assert "database is locked" not in run.stderr
    assert " 0 failed, " in run.stdout.splitlines()[-1], run.stdout


# --- (a) the webhook records real pushes while a backfill runs -------------------------------


@pytest.fixture
def live(signet, settings, tmpfs_registry) -> Iterator[Setup]:
    """Instance ``prod`` whose real registry notifies the live Signet; signing after a push
    runs in the background pool, as in production."""
    settings.SIGNING_DISPATCH = "thread"
    instance, token = registry_services.create_instance(
        name="prod", backend_url="http://127.0.0.1:9", default_domain="registry.signet.test"
    )
    server = tmpfs_registry(
        notify_url=signet_url(signet) + registry_services.webhook_path(instance=instance),
        notify_token=token,
    )
    instance = registry_services.update_instance(instance=instance, backend_url=server.url)
    kms_services.grant_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)
    client = RegistryClient(server.url, backoff=0.05)
    yield Setup(instance, client, make_key("signer"))
    wait_for_background_work(timeout=30)
    client.close()


def test_a_backfill_finishes_while_the_webhook_records_and_signs_real_pushes(live, start_backfill):
    push_many(live.client, "team/bulk", IMAGES)
    live_signet.wait_for(
        lambda: Manifest.objects.filter(repository__name="team/bulk").count() == IMAGES,
        "the webhook to record the bulk push",
        seconds=60,
    )
    _policy(live.instance, "team", live.key)  # after the bulk: only the backfill signs it

    backfill = start_backfill("--namespace", "team")
    pushed_meanwhile = 0
    image = build_image(seed="live")
    live.client.upload_blob("team/live", image.config)
    live.client.upload_blob("team/live", image.layer)
    while backfill.running() and pushed_meanwhile < 40:
        manifest = {**json.loads(image.manifest), "annotations": {"n": str(pushed_meanwhile)}}
        live.client.put_manifest(
            "team/live", f"v{pushed_meanwhile}", canonical_json(manifest), OCI_MANIFEST
        )
        pushed_meanwhile += 1
        time.sleep(0.05)
    run = backfill.wait()
    live_signet.wait_for(
        lambda: (
            Signature.objects.filter(
                manifest__repository__name="team/live", status=SignatureStatus.SIGNED
            ).count()
            == pushed_meanwhile
        ),
        "the pushes to be signed",
        seconds=60,
    )
    assert wait_for_background_work(timeout=30)

    bulk = Signature.objects.filter(
        manifest__repository__name="team/bulk", status=SignatureStatus.SIGNED
    ).count()
    print(
        f"(a) backfill exit {run.returncode}, team/bulk signed {bulk}/{IMAGES}, "
        f"{pushed_meanwhile} pushed meanwhile"
    )
    assert pushed_meanwhile >= 5, "the pushes did not overlap the backfill"
    assert_succeeded(run)
    manifests = list(Manifest.objects.select_related("repository"))
    assert len(manifests) == IMAGES + pushed_meanwhile
    assert_signed_once(live, manifests)
    assert_no_pending_row_is_published(live)


# --- (b) two backfills of the same scope -----------------------------------------------------


def test_two_backfills_of_the_same_scope_both_succeed_and_sign_each_image_once(
    synced, start_backfill
):
    push_many(synced.client, "team/bulk", IMAGES)
    sync(synced)
    _policy(synced.instance, "team", synced.key)

    first, second = start_backfill(), start_backfill()
    runs = [first.wait(), second.wait()]

    print(f"(b) exits {[r.returncode for r in runs]}, signed {signed_in('team')}/{IMAGES}")
    for run in runs:
        assert_succeeded(run)
    signed_by = [
        int(run.stdout.splitlines()[-1].split(": ", 1)[1].split(" signed")[0]) for run in runs
    ]
    print(f"(b) signed by each backfill: {signed_by}")
    assert sum(signed_by) == IMAGES, signed_by  # each image counted by the one that signed it
    assert_signed_once(synced, list(Manifest.objects.select_related("repository")))
    assert_no_pending_row_is_published(synced)


# --- (c) two backfills of disjoint namespaces ------------------------------------------------


def test_two_backfills_of_different_namespaces_both_succeed(synced, start_backfill):
    half = IMAGES // 2
    push_many(synced.client, "team/bulk", half)
    push_many(synced.client, "other/bulk", half)
    sync(synced)
    _policy(synced.instance, "team", synced.key)
    _policy(synced.instance, "other", synced.key)

    team, other = start_backfill("--namespace", "team"), start_backfill("--namespace", "other")
    runs = [team.wait(), other.wait()]

    print(
        f"(c) exits {[r.returncode for r in runs]}, signed team {signed_in('team')}/{half}, "
        f"other {signed_in('other')}/{half}"
    )
    for run in runs:
        assert_succeeded(run)
        assert f": {half} signed, 0 already signed" in run.stdout.splitlines()[-1], run.stdout
    assert_signed_once(synced, list(Manifest.objects.select_related("repository")))
    assert_no_pending_row_is_published(synced)

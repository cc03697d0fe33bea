"""KMS management commands: generate_master_key, rotate_master_key, purge_deleted_keys."""

from __future__ import annotations

import base64
from datetime import timedelta
from io import StringIO

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from django.core.management import CommandError, call_command
from django.utils import timezone

from kms import crypto, services
from kms.errors import MasterKeyError
from kms.management.commands.rotate_master_key import Command as RotateCommand
from kms.models import Key, KeyState, KeyUsage
from kms.services import material, operations
from tests.factories import make_key

pytestmark = pytest.mark.django_db

KEY_A = base64.b64encode(b"A" * 32).decode()
KEY_B = base64.b64encode(b"B" * 32).decode()
RING_A = f"1:{KEY_A}"
RING_B = f"2:{KEY_B}"
RING_B_THEN_A = f"2:{KEY_B},1:{KEY_A}"
MESSAGE = b"sha256:digest-of-an-image-manifest"


def run(name: str, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def use_keyring(settings, text: str) -> None:
    """Switch the master keyring and forget every opened private key."""
    settings.KMS_MASTER_KEY = text
    material.key_cache.clear()


def sign_and_check(key: Key) -> None:
    algorithm = key.allowed_algorithms[0]
    signature = operations.sign(key_id=str(key.key_id), message=MESSAGE, algorithm=algorithm)
    public = serialization.load_pem_public_key(key.public_key_pem.encode())
    if key.key_usage == KeyUsage.ECC:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, MESSAGE, ec.ECDSA(hashes.SHA256()))
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())


# --- generate_master_key ----------------------------------------------------------------


def test_generate_master_key_prints_an_entry_the_keyring_parses():
    out, err = run("generate_master_key")
    keyring = crypto.MasterKeyring.parse(out.strip())
    # The test settings hold version 1, so the next version is 2.
    assert keyring.current == 2
    assert len(keyring.keys[2]) == 32
    assert "rotate_master_key" in err


def test_generate_master_key_uses_the_requested_version_and_fresh_bytes():
    first, _ = run("generate_master_key", "--version", "7")
    second, _ = run("generate_master_key", "--version", "7")
    assert first.startswith("7:") and second.startswith("7:")
    assert crypto.MasterKeyring.parse(first).keys != crypto.MasterKeyring.parse(second).keys


def test_generate_master_key_never_prints_the_current_master_key(settings):
    settings.KMS_MASTER_KEY = RING_A
    out, err = run("generate_master_key")
    assert out.startswith("2:")
    assert KEY_A not in out + err


@pytest.mark.parametrize(
    "version, message",
    [
        ("0", "--version must be a positive whole number, not 0."),
        (
            "1",
            "Version 1 is already in KMS_MASTER_KEY; choose a new version "
            "(for example --version 2).",
        ),
    ],
)
def test_generate_master_key_refuses_a_bad_version(version, message):
    with pytest.raises(CommandError) as error:
        run("generate_master_key", "--version", version)
    assert str(error.value) == message


def test_generate_master_key_starts_at_version_1_without_a_keyring(settings):
    settings.KMS_MASTER_KEY = ""
    out, err = run("generate_master_key")
    assert crypto.MasterKeyring.parse(out.strip()).current == 1
    assert "Set KMS_MASTER_KEY to the line above" in err


# --- rotate_master_key ------------------------------------------------------------------


def test_rotate_master_key_reseals_every_key_under_the_new_version(settings):
    use_keyring(settings, RING_A)
    rsa_key = make_key("rsa-signer")
    ecc_key = make_key("ecc-signer", key_usage=KeyUsage.ECC)
    sealed_before = {key.pk: bytes(key.sealed_private_key) for key in (rsa_key, ecc_key)}
    sign_and_check(rsa_key)

    use_keyring(settings, RING_B_THEN_A)
    out, _ = run("rotate_master_key")

    assert "Re-sealed 2 keys under master key version 2 (0 were already current)" in out
    for key in Key.objects.all():
        assert key.master_key_version == 2
        assert bytes(key.sealed_private_key) != sealed_before[key.pk]

    use_keyring(settings, RING_B)  # the old entry dropped: the new key alone opens everything
    for key in Key.objects.all():
        sign_and_check(key)

    use_keyring(settings, RING_A)  # the old key alone opens nothing any more
    for key in Key.objects.all():
        with pytest.raises(MasterKeyError) as error:
            operations.sign(
                key_id=str(key.key_id), message=MESSAGE, algorithm=key.allowed_algorithms[0]
            )
        assert str(key.key_id) in str(error.value.details.get("key_id"))


def test_rotate_master_key_is_idempotent_and_counts_current_keys(settings):
    use_keyring(settings, RING_A)
    make_key("old-signer", key_usage=KeyUsage.ECC)
    use_keyring(settings, RING_B_THEN_A)
    make_key("new-signer", key_usage=KeyUsage.ECC)  # sealed under version 2 already

    first, _ = run("rotate_master_key")
    second, _ = run("rotate_master_key")

    assert "Re-sealed 1 key under master key version 2 (1 were already current)" in first
    assert "Re-sealed 0 keys under master key version 2 (2 were already current)" in second
    assert set(Key.objects.values_list("master_key_version", flat=True)) == {2}


def test_rotate_master_key_names_the_key_it_cannot_open(settings):
    use_keyring(settings, RING_A)
    key = make_key("stranded", key_usage=KeyUsage.ECC)

    use_keyring(settings, RING_B)  # the old version is missing from the keyring
    with pytest.raises(CommandError) as error:
        run("rotate_master_key")

    message = str(error.value)
    assert f"Cannot re-seal key {key.key_id}" in message
    assert "master key version 1 is not in KMS_MASTER_KEY" in message
    assert KEY_A not in message and KEY_B not in message
    key.refresh_from_db()
    assert key.master_key_version == 1


def test_rotate_master_key_reports_a_malformed_keyring_without_its_bytes(settings):
    make_key("signer", key_usage=KeyUsage.ECC)
    use_keyring(settings, f"2:{KEY_B[:-4]}")
    with pytest.raises(CommandError) as error:
        run("rotate_master_key")
    assert "KMS_MASTER_KEY is unusable" in str(error.value)
    assert KEY_B[:-4] not in str(error.value)
    assert set(Key.objects.values_list("master_key_version", flat=True)) == {1}


def test_rotate_master_key_help_documents_the_zero_downtime_procedure():
    help_text = RotateCommand().create_parser("manage.py", "rotate_master_key").format_help()
    assert "1. Generate a new key" in help_text
    assert 'KMS_MASTER_KEY="NEW_VERSION:NEW,OLD_VERSION:OLD"' in help_text
    assert "3. Run this command." in help_text
    assert "4. When it reports every key current, drop the old entry" in help_text


# --- purge_deleted_keys -----------------------------------------------------------------


@pytest.fixture
def keys_in_every_state():
    due, future, disabled = (
        make_key(alias, key_usage=KeyUsage.ECC) for alias in ("due", "future", "idle")
    )
    for key in (due, future, disabled):
        services.disable_key(key_id=str(key.key_id))
    for key in (due, future):
        services.schedule_key_deletion(key_id=str(key.key_id), pending_window_in_days=7)
    Key.objects.filter(pk=due.pk).update(deletion_date=timezone.now() - timedelta(minutes=1))
    return due, future, disabled


def test_purge_deleted_keys_dry_run_lists_due_keys_and_keeps_them(keys_in_every_state):
    due, future, disabled = keys_in_every_state

    out, _ = run("purge_deleted_keys", "--dry-run")

    assert f"Would destroy key due ({due.key_id})" in out
    assert "future" not in out and "idle" not in out
    assert "Dry run: 1 key would be destroyed; nothing changed." in out
    assert {key.pk: key.state for key in Key.objects.all()} == {
        due.pk: KeyState.PENDING_DELETE,
        future.pk: KeyState.PENDING_DELETE,
        disabled.pk: KeyState.DISABLED,
    }


def test_purge_deleted_keys_destroys_only_keys_whose_date_has_passed(keys_in_every_state):
    due, future, disabled = keys_in_every_state

    out, _ = run("purge_deleted_keys")

    assert f"Destroyed key due ({due.key_id})" in out
    assert "Destroyed 1 key." in out
    assert set(Key.objects.values_list("alias", flat=True)) == {"future", "idle"}
    assert Key.objects.get(pk=future.pk).state == KeyState.PENDING_DELETE
    assert Key.objects.get(pk=disabled.pk).state == KeyState.DISABLED

    again, _ = run("purge_deleted_keys")
    assert "Destroyed 0 keys." in again
    assert Key.objects.count() == 2


@pytest.mark.django_db
def test_rotating_the_master_key_reseals_registry_credentials_too(settings):
    from registry import services as registry_services

    settings.KMS_MASTER_KEY = "1:" + base64.b64encode(b"a" * 32).decode()
    instance, _token = registry_services.create_instance(
        name="creds",
        backend_url="http://127.0.0.1:1",
        default_domain="r.example.com",
        auth_type="basic",
        username="robot",
        secret="s3cret-password",
    )
    settings.KMS_MASTER_KEY = (
        "2:" + base64.b64encode(b"b" * 32).decode() + ",1:" + base64.b64encode(b"a" * 32).decode()
    )
    out = StringIO()
    call_command("rotate_master_key", stdout=out)
    assert "registry.services.reseal_instance_secrets: re-sealed 1" in out.getvalue()
    instance.refresh_from_db()
    assert instance.secret_master_key_version == 2
    settings.KMS_MASTER_KEY = "2:" + base64.b64encode(b"b" * 32).decode()
    assert instance.secret() == "s3cret-password"

"""Re-seal stored registry credentials so they are bound to their backend URL's origin.

Before, a credential's AES-GCM associated data named only the instance
(``registry-instance:<pk>``), so changing ``backend_url`` sent the stored password to the
new host. Now it names the origin too (``registry.secrets.key_id``). There is no fallback
to the old binding at read time (that would be the hole again): this migration opens
every stored credential under the old binding and seals it under the new one, in place.

It needs ``KMS_MASTER_KEY`` when (and only when) a credential is stored; without it the
migration stops with a message instead of leaving credentials nothing can open. A
credential that does not open under the old binding either (already unusable) is left
as it was, with a warning.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import migrations

from kms import crypto

logger = logging.getLogger(__name__)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> str:
    # A frozen copy of registry.secrets.origin_of: migrations must not follow later edits.
    from urllib.parse import urlsplit

    parts = urlsplit((url or "").strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        port = 0
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def _old(pk: int, url: str) -> str:
    return f"registry-instance:{pk}"


def _new(pk: int, url: str) -> str:
    return f"registry-instance:{pk}@{_origin(url)}"


def _reseal(apps, schema_editor, source, target) -> None:
    Instance = apps.get_model("registry", "Instance")
    stored = Instance.objects.filter(sealed_secret__isnull=False)
    if not stored.exists():
        return
    try:
        keyring = crypto.MasterKeyring.parse(settings.KMS_MASTER_KEY)
    except crypto.MasterKeyringError as exc:
        raise RuntimeError(
            "registry.0004 re-seals the stored registry credentials and needs KMS_MASTER_KEY "
            f"(the same one the service runs with): {exc}"
        ) from None
    for instance in stored.iterator():
        sealed = bytes(instance.sealed_secret)
        version = instance.secret_master_key_version or 0
        try:
            crypto.open_sealed(
                sealed, keyring=keyring, key_id=target(instance.pk, instance.backend_url),
                version=version,
            )
            continue  # already in the target form
        except crypto.SealError:
            pass
        try:
            plaintext = crypto.open_sealed(
                sealed, keyring=keyring, key_id=source(instance.pk, instance.backend_url),
                version=version,
            )
        except crypto.SealError:
            # It did not open before either: nothing to carry over, and blocking the
            # upgrade would not help. The instance keeps reporting InstanceMisconfigured
            # until its credential is entered again.
            logger.warning(
                "registry.0004: the stored credential of instance %s does not open under "
                "KMS_MASTER_KEY; left as it was (enter it again)", instance.name,
            )
            continue
        instance.sealed_secret, instance.secret_master_key_version = crypto.seal(
            plaintext, keyring=keyring, key_id=target(instance.pk, instance.backend_url)
        )
        instance.save(update_fields=["sealed_secret", "secret_master_key_version"])


def forwards(apps, schema_editor) -> None:
    _reseal(apps, schema_editor, _old, _new)


def backwards(apps, schema_editor) -> None:
    _reseal(apps, schema_editor, _new, _old)


class Migration(migrations.Migration):
    dependencies = [("registry", "0003_domain_names_unique")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]

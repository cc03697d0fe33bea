"""Where an instance's registry credential comes from, and what may open it.

Two sources, never both (a database constraint says so):

- a stored secret, AES-256-GCM sealed under the KMS master keyring. The associated data
  names the instance AND the origin (scheme, host, port) of its ``backend_url``: a
  credential sealed for ``https://registry.internal:443`` does not open once the URL
  points anywhere else, so moving the URL (through any interface, or by editing the row)
  can never send the stored password to the new host;
- an environment variable, and only one whose name starts with ``SECRET_ENV_PREFIX``:
  ``KMS_MASTER_KEY``, ``SECRET_KEY``, ``DATABASE_URL`` and the rest of the process
  environment are out of reach of whoever may edit an instance. The prefix is checked
  when an instance is saved and again each time the variable is read, so a row written
  before this rule (or by hand) cannot leak either.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from config.errors import DomainError
from kms import crypto
from kms.services import master_keyring

if TYPE_CHECKING:
    from registry.models import Instance

# Fixed, not a setting: a setting could be widened back to the whole environment.
SECRET_ENV_PREFIX = "SIGNET_REGISTRY_SECRET_"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class InstanceMisconfigured(DomainError):
    code = "InternalError.InstanceMisconfigured"
    http_status = 500
    default_message = "The registry instance's credentials cannot be read."


def secret_env_errors(name: str) -> list[str]:
    """Why ``name`` may not hold an instance's credential ([] when it may)."""
    if name and (not name.startswith(SECRET_ENV_PREFIX) or name == SECRET_ENV_PREFIX):
        return [
            f"Only environment variables named {SECRET_ENV_PREFIX}<NAME> may hold a registry "
            "credential; other variables of Signet's environment cannot be used."
        ]
    return []


def origin_of(url: str) -> str:
    """``scheme://host:port`` with the default port spelled out and the host lowercased.

    ``https://Registry.example`` and ``https://registry.example:443/v2`` are one origin.
    """
    parts = urlsplit((url or "").strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        port = 0
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def same_origin(first: str, second: str) -> bool:
    return origin_of(first) == origin_of(second)


def key_id(*, pk: int, backend_url: str) -> str:
    """What a stored secret is bound to (the AES-GCM associated data, with the key version)."""
    return f"registry-instance:{pk}@{origin_of(backend_url)}"


def legacy_key_id(pk: int) -> str:
    """The binding used before secrets were tied to an origin (migration 0002 re-seals)."""
    return f"registry-instance:{pk}"


def seal_for(instance: Instance, secret: str) -> None:
    """Store ``secret`` on ``instance`` (unsaved) for its pk and current ``backend_url``;
    ``""`` removes the stored secret."""
    if secret:
        sealed, version = crypto.seal(
            secret.encode(), keyring=master_keyring(),
            key_id=key_id(pk=instance.pk, backend_url=instance.backend_url),
        )
        instance.sealed_secret = sealed
        instance.secret_master_key_version = version
    else:
        instance.sealed_secret = None
        instance.secret_master_key_version = None


def read_secret(instance: Instance) -> str:
    """The plaintext password or token ("" when there is none). Never log it."""
    if instance.secret_env:
        if secret_env_errors(instance.secret_env):
            raise InstanceMisconfigured(
                f"Instance {instance.name}: secret_env {instance.secret_env} is refused: only "
                f"variables named {SECRET_ENV_PREFIX}<NAME> may hold a registry credential."
            )
        value = os.environ.get(instance.secret_env)
        if value is None:
            raise InstanceMisconfigured(
                f"Instance {instance.name}: environment variable {instance.secret_env} is not "
                "set."
            )
        return value
    if instance.sealed_secret is None:
        return ""
    try:
        plaintext = crypto.open_sealed(
            bytes(instance.sealed_secret), keyring=master_keyring(),
            key_id=key_id(pk=instance.pk, backend_url=instance.backend_url),
            version=instance.secret_master_key_version or 0,
        )
    except crypto.SealError:
        raise InstanceMisconfigured(
            f"Instance {instance.name}: the stored registry credential does not open under "
            "KMS_MASTER_KEY for this backend URL (it opens only for the origin it was "
            "stored with; enter it again)."
        ) from None
    return plaintext.decode()

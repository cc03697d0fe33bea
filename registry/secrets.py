"""Where an instance's registry credential comes from, and what may open it.

Two sources, never both (a database constraint says so):

- a stored secret, AES-256-GCM sealed under the KMS master keyring. The associated data
  names the instance AND the origin (scheme, host, port) of its ``backend_url``: a
  credential sealed for ``https://registry.internal:443`` does not open once the URL
  points anywhere else, so moving the URL (through any interface, or by editing the row)
  can never send the stored password to the new host;
- an environment variable, and only one whose name starts with ``SECRET_ENV_PREFIX``:
  ``KMS_MASTER_KEY``, ``SECRET_KEY``, ``DATABASE_URL`` and the rest of the process
  environment are out of reach of whoever may edit an instance. Such a variable is bound
  to one origin too, and by whoever sets the process environment (the operator), not by
  an instance field: ``SIGNET_REGISTRY_SECRET_<NAME>`` is only ever sent to the origin in
  ``SIGNET_REGISTRY_ORIGIN_<NAME>``. Otherwise an editor could name the variable again
  while moving ``backend_url``, or name another instance's variable, and have it sent
  anywhere (its name is no secret).

Prefix and binding are checked when an instance is saved (a precise error for the editor)
and again each time the credential is read, so a row written before these rules, or by
hand, or an operator who later rebinds the variable cannot send it elsewhere. What fails
at read time goes to the log in full; the exception (which readers may see, in a
signature's failure reason or an API answer) names neither variables nor origins.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from kms import crypto
from kms.services.material import master_keyring
from registry.errors import InstanceMisconfigured

if TYPE_CHECKING:
    from registry.models import Instance

logger = logging.getLogger(__name__)

# Fixed, not settings: a setting could be widened back to the whole environment.
SECRET_ENV_PREFIX = "SIGNET_REGISTRY_SECRET_"
# Not a secret, and never usable as one: it does not start with SECRET_ENV_PREFIX.
ORIGIN_ENV_PREFIX = "SIGNET_REGISTRY_ORIGIN_"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def secret_env_errors(name: str) -> list[str]:
    """Why ``name`` may not hold an instance's credential ([] when it may)."""
    if name and (not name.startswith(SECRET_ENV_PREFIX) or name == SECRET_ENV_PREFIX):
        return [
            f"Only environment variables named {SECRET_ENV_PREFIX}<NAME> may hold a registry "
            "credential; other variables of Signet's environment cannot be used."
        ]
    return []


def companion_of(name: str) -> str:
    """``SIGNET_REGISTRY_ORIGIN_<NAME>`` for ``SIGNET_REGISTRY_SECRET_<NAME>``."""
    return ORIGIN_ENV_PREFIX + name.removeprefix(SECRET_ENV_PREFIX)


def _declared_origin(value: str) -> str | None:
    """The normalised origin a companion variable declares; None unless it is a bare
    ``http(s)://host[:port]`` (a trailing ``/`` is allowed)."""
    text = value.strip()
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        return None
    if (
        parts.scheme.lower() not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or "?" in text
        or "#" in text
    ):
        return None
    return origin_of(text)


def secret_env_binding_errors(name: str, backend_url: str) -> list[str]:
    """Why the credential in variable ``name`` may not be sent to ``backend_url`` ([] when
    the operator bound it to that origin). Never contains a value of the environment
    other than the companion's own name."""
    companion = companion_of(name)
    target = origin_of(backend_url)
    declared = os.environ.get(companion, "")
    if not declared.strip():
        return [
            f"{companion} is not set: {name} is only sent to the registry origin the "
            f"operator declares for it. Set {companion}={target} in Signet's environment "
            "(next to the secret) to allow this origin."
        ]
    bound = _declared_origin(declared)
    if bound is None:
        return [
            f"{companion} is not an origin: it must be scheme://host[:port] (http or "
            "https), with no path, query or credentials."
        ]
    if bound != target:
        return [
            f"{name} is bound to another origin than {target} by {companion}: the credential "
            "is only ever sent to the origin declared there. Point backend_url at that "
            "origin, name a variable bound to this one, or have the operator (who sets "
            f"Signet's environment) declare it with {companion}={target}."
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
    """The binding used before secrets were tied to an origin (migration 0004 re-seals)."""
    return f"registry-instance:{pk}"


def seal_for(instance: Instance, secret: str) -> None:
    """Store ``secret`` on ``instance`` (unsaved) for its pk and current ``backend_url``;
    ``""`` removes the stored secret."""
    if secret:
        sealed, version = crypto.seal(
            secret.encode(),
            keyring=master_keyring(),
            key_id=key_id(pk=instance.pk, backend_url=instance.backend_url),
        )
        instance.sealed_secret = sealed
        instance.secret_master_key_version = version
    else:
        instance.sealed_secret = None
        instance.secret_master_key_version = None


def _refuse(instance: Instance, cause: str) -> InstanceMisconfigured:
    # The cause names variables and origins, which readers may not see (backend_url is
    # editor-only): it goes to the log; the exception only says whom to ask.
    logger.warning("registry instance %s: its credential is not used: %s", instance.name, cause)
    return InstanceMisconfigured(
        f"Instance {instance.name}: the instance's registry credential cannot be used: ask "
        "an instance editor (Signet's log names the cause)."
    )


def read_secret(instance: Instance) -> str:
    """The plaintext password or token ("" when there is none). Never log it."""
    if instance.secret_env:
        name = instance.secret_env
        problems = secret_env_errors(name) or secret_env_binding_errors(name, instance.backend_url)
        if problems:
            raise _refuse(instance, f"secret_env {name}: {problems[0]}")
        value = os.environ.get(name)
        if value is None:
            raise _refuse(instance, f"environment variable {name} is not set.")
        return value
    if instance.sealed_secret is None:
        return ""
    try:
        plaintext = crypto.open_sealed(
            bytes(instance.sealed_secret),
            keyring=master_keyring(),
            key_id=key_id(pk=instance.pk, backend_url=instance.backend_url),
            version=instance.secret_master_key_version or 0,
        )
    except crypto.SealError:
        raise _refuse(
            instance,
            "the stored credential does not open under KMS_MASTER_KEY for the backend "
            f"origin {origin_of(instance.backend_url)} (it opens only for the origin it was "
            "stored with, under the master key it was sealed with; enter it again).",
        ) from None
    return plaintext.decode()

"""Recording audit events. Other apps call ``record``; ``audit`` imports none of them.

``record`` writes on the caller's database connection, so inside a transaction the event
commits or rolls back together with the change it describes.

Action codes in use: ``KNOWN_ACTIONS`` (``<app>.<object>.<verb>``), object types:
``KNOWN_OBJECT_TYPES``. A test (tests/audit/test_catalog.py) fails when a ``record`` call
in the code base uses an action code missing there; the admin's filters offer these lists.

Secrets never go in: ``changes`` and ``details`` lose every key whose name holds a word
like token, secret, password, private, sealed, master or credential (``SECRET_WORDS``),
string values that hold a PEM private key are replaced, and passwords in URLs are masked.
"""

from __future__ import annotations

import datetime
import decimal
import itertools
import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any

from django.apps import apps
from django.db import models

from audit import context
from audit.models import ACTION_PATTERN, AuditEvent

logger = logging.getLogger(__name__)

# Every action code Signet records, by app.
KNOWN_ACTIONS: tuple[str, ...] = (
    # instance memberships (superusers only read these: ``audit.scoping``)
    "accounts.membership.granted",
    "accounts.membership.changed",
    "accounts.membership.revoked",
    "kms.key.created",
    "kms.key.state_changed",  # enabled or disabled
    "kms.key.deletion_scheduled",
    "kms.key.deletion_cancelled",
    "kms.key.purged",
    # direct use through the API (``kms.usage``): outcome and message digest in ``details``
    "kms.key.sign_requested",
    "kms.key.verify_requested",
    "kms.service_authorization.granted",
    "kms.service_authorization.revoked",
    "kms.master_key.rotated",
    "registry.instance.created",
    "registry.instance.webhook_token_rotated",
    "registry.instance.updated",
    "registry.instance.deleted",
    # by the API, the admin, or for a pushed repository (webhook, sync): ``details.source``
    "registry.namespace.created",
    "registry.namespace.deleted",
    "signing.policy.created",
    "signing.policy.changed",
    "signing.policy.disabled",
    "signing.policy.deleted",
    # manual, backfill, resign, retry, scheduled-retry: scope and counts in ``details``
    "signing.sign.requested",
    "signing.signature.failed",
    # a delete event named an image the registry still holds: its .sig was not removed
    "signing.artifact.kept",
    # recheck_signatures --remove: a signed image the registry does not hold
    "signing.signature.revoked",
    "apitokens.token.created",  # details: user, prefix, expires, via (api or command)
    "apitokens.token.revoked",  # details: user, prefix, reason, expired
)
# The apps of those codes ("accounts", "kms"...), for "every action of an app".
ACTION_APPS: tuple[str, ...] = tuple(dict.fromkeys(code.split(".")[0] for code in KNOWN_ACTIONS))

# Every object type events name: ``obj._meta.label_lower`` of the models passed to
# ``record(obj=...)`` and the explicit ``object_type=`` values ("" when none: a sign
# request spanning several policies).
KNOWN_OBJECT_TYPES: tuple[str, ...] = (
    "accounts.instancemembership",
    "kms.key",
    "kms.serviceauthorization",
    "kms.master_key",
    "registry.instance",
    "registry.namespace",
    "signing.signingpolicy",
    "signing.signature",
    "apitokens.apitoken",
)

# A field is dropped when one of the words of its name (split at "_", "-", "." and
# camelCase) is one of these: "webhook_token", "sealedSecret", "db-password" go;
# "resealed" and "key_id" stay.
SECRET_WORDS = frozenset(
    {
        "token",
        "tokens",
        "secret",
        "secrets",
        "password",
        "passwords",
        "passwd",
        "passphrase",
        "private",
        "sealed",
        "master",
        "credential",
        "credentials",
        "apikey",
        "pem",
        "der",
    }
)
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
REDACTED = "[redacted]"
_PRIVATE_KEY = re.compile(r"PRIVATE\s+KEY", re.IGNORECASE)
_URL_PASSWORD = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^/@:\s]*):[^/@\s]*@", re.IGNORECASE
)
_ACTION = re.compile(ACTION_PATTERN)
MAX_STRING = 2000
MAX_ITEMS = 200


def is_secret_name(name: str) -> bool:
    words = [word.lower() for word in _WORD.findall(name)]
    joined = {a + b for a, b in itertools.pairwise(words)}  # "api_key" -> "apikey"
    return not SECRET_WORDS.isdisjoint(words) or not SECRET_WORDS.isdisjoint(joined)


def _clean_string(value: str) -> str:
    if _PRIVATE_KEY.search(value):
        return REDACTED
    value = _URL_PASSWORD.sub(r"\g<scheme>\g<user>:***@", value)
    return value if len(value) <= MAX_STRING else value[:MAX_STRING] + "..."


def clean(value: Any, *, path: str = "") -> Any:
    """A JSON-ready copy of ``value`` without secrets (see the module docstring)."""
    if isinstance(value, Mapping):
        return _clean_mapping(value, path)
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
        return [clean(item, path=path) for item in items[:MAX_ITEMS]]
    return _clean_scalar(value)


def _clean_mapping(value: Mapping[Any, Any], path: str) -> dict[str, Any]:
    result = {}
    for key, item in value.items():
        name = str(key)
        if is_secret_name(name):
            logger.warning("audit: dropped the field %r (looks like a secret)", path + name)
            continue
        result[name] = clean(item, path=f"{path}{name}.")
    return result


def _clean_scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _clean_string(str(value))  # str(): plain text, also for TextChoices members
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(bytes(value))} bytes>"  # never the content: it may be sealed material
    return _clean_string(str(value))  # model instances and anything else: their text


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{"field": [before, after]}`` for each field whose value changed."""
    return {
        name: [before.get(name), after.get(name)]
        for name in dict.fromkeys([*before, *after])
        if before.get(name) != after.get(name)
    }


# The model of the registry instances events are scoped to, named (like the string
# foreign keys of ``accounts``) rather than imported: ``audit`` sits below ``registry``.
INSTANCE_MODEL = "registry.Instance"


def _is_instance(obj: Any) -> bool:
    meta = getattr(obj, "_meta", None)
    return meta is not None and meta.label_lower == INSTANCE_MODEL.lower()


def _instance_scope(
    obj: models.Model | None, instance: Any, instance_name: str
) -> tuple[int | None, str]:
    """``(instance_id, instance_name)`` of an event: from ``instance`` (an instance, or
    anything with its ``pk`` and ``name``), else from ``obj`` when it is an instance,
    else the live instance named ``instance_name``. An object whose row is already deleted
    (``pk`` None) counts as the name alone. No instance of that name: id None (as for
    events of no instance; see ``audit.scoping``)."""
    for candidate in (instance, obj if _is_instance(obj) else None):
        if candidate is None:
            continue
        name = instance_name or str(getattr(candidate, "name", "") or "")
        if candidate.pk is not None and name == getattr(candidate, "name", name):
            return int(candidate.pk), name
        instance_name = name
    if not instance_name:
        return None, ""
    model = apps.get_model(INSTANCE_MODEL)
    found = model._default_manager.filter(name=instance_name[:50]).values_list("pk", flat=True)
    return next(iter(found), None), instance_name


def record(
    action: str,
    *,
    obj: models.Model | None = None,
    object_type: str | None = None,
    object_id: Any = None,
    object_repr: str | None = None,
    instance: Any = None,
    instance_name: str = "",
    namespace_name: str = "",
    changes: Mapping[str, Any] | None = None,
    details: Mapping[str, Any] | None = None,
    actor: Any = None,
) -> AuditEvent:
    """Append one event. ``actor``: the acting user when the caller knows it (see
    ``audit.context.resolve_actor`` for how the actor is decided otherwise).

    ``instance`` / ``instance_name``: the registry instance the event concerns (neither
    for none: KMS administration, visible to superusers only). The event stores its name
    (display, filters) and its id (scoping, ``audit.scoping``): pass the instance when at
    hand (no query); with only the name, the live instance of that name is looked up, so
    record an instance's deletion before deleting the row. ``namespace_name``: the one
    namespace of that instance it concerns ("" for instance-wide or multi-namespace
    events, which memberships narrowed to namespaces do not see)."""
    if not _ACTION.fullmatch(action):
        raise ValueError(f"Audit action {action!r} is not a dotted code like 'kms.key.created'.")
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = obj.pk if object_id is None else object_id
        object_repr = str(obj) if object_repr is None else object_repr
    instance_id, instance_name = _instance_scope(obj, instance, instance_name)
    who = context.resolve_actor(actor)
    event = AuditEvent(
        action=action,
        actor_type=who.type,
        actor=who.user,
        actor_label=who.label,
        object_type=object_type or "",
        object_id="" if object_id is None else str(object_id)[:100],
        object_repr=_clean_string(object_repr or "")[:200],
        instance_name=(instance_name or "")[:50],
        instance_id=instance_id,
        namespace_name=(namespace_name or "")[:255],
        changes=clean(dict(changes or {})),
        details=clean(dict(details or {})),
        source_ip=context.source_ip(),
    )
    event.save()
    return event

"""Registry operations. The webhook, admin, API and ``sync_registry`` all call these.

Extension points (settings, dotted paths; ``registry`` never imports ``signing``):

``REGISTRY_PUSH_HANDLERS``
    ``handler(*, instance, manifests, tags, source)`` is called INSIDE the transaction that
    records a delivery (or one repository of a sync), once the pushes are written:

    - ``manifests``: ``Manifest`` rows created by this call (image manifests, image indexes
      and index children pushed by digest), ``repository__namespace__instance`` loaded;
    - ``tags``: ``Tag`` rows created or moved to another digest (``tag.manifest`` is the
      new one; the previous digest is the newest ``TagHistory.from_digest``). A tag moved
      onto a manifest that was already recorded appears here without its manifest;
    - ``source``: ``"webhook"`` for registry notifications, ``"sync"`` for images imported
      by ``sync_registry`` (images that existed before Signet or whose events were lost).
      Handlers that sign must not sign ``"sync"`` pushes automatically.

    Rows a handler writes commit together with the push. Slow work (KMS, registry calls)
    belongs in ``transaction.on_commit``. Handlers must not raise: each runs in its own
    savepoint, and if it raises anyway its writes are rolled back, the error is logged and
    counted (``handler_errors``), and the push is still recorded, so a registry retry
    cannot block the delivery queue. Work a failed handler missed is found again from
    durable state (the manifests and tags are recorded).

``REGISTRY_DELETE_HANDLERS``
    ``handler(*, instance, manifests, source)`` is called inside the transaction BEFORE the
    ``Manifest`` rows (and, by cascade, their tags) are deleted; ``source`` is
    ``"webhook"`` or ``"namespace-delete"``. Same savepoint/error rules as push handlers.
    Rows of other apps that point at ``Manifest``/``Tag`` with ``PROTECT`` must be removed
    by such a handler; if a delete is still refused the event is recorded as ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError, QuerySet, RestrictedError
from django.urls import reverse
from django.utils import timezone
from django.utils.module_loading import import_string

from accounts.models import InstanceMembership
from accounts.services import revoke_membership
from audit import context as audit_context
from audit import services as audit
from config.errors import DomainError, ValidationFailed
from kms.services import master_keyring
from registry import network
from registry.instance_audit import audit_instance_deleted, audit_instance_updated, snapshot
from registry.models import (
    DIGEST_PATTERN,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    NAMESPACE_PATTERN,
    REPOSITORY_MAX_LENGTH,
    REPOSITORY_PATTERN,
    SIGNATURE_TAG_PATTERN,
    TAG_PATTERN,
    AuthType,
    EventStatus,
    Instance,
    InstanceDomain,
    Manifest,
    ManifestReference,
    Namespace,
    RegistryEvent,
    Repository,
    Tag,
    TagHistory,
)
from registry.secrets import (
    InstanceMisconfigured,  # noqa: F401  (raised by Instance.secret(); callers catch it here)
    origin_of,
    same_origin,
    seal_for,
    secret_env_binding_errors,
    secret_env_errors,
)

logger = logging.getLogger(__name__)

_DIGEST_RE = re.compile(DIGEST_PATTERN)
_REPOSITORY_RE = re.compile(REPOSITORY_PATTERN)
_TAG_RE = re.compile(TAG_PATTERN)
_NAMESPACE_RE = re.compile(NAMESPACE_PATTERN)
_SIGNATURE_TAG_RE = re.compile(SIGNATURE_TAG_PATTERN)

WEBHOOK_CONTENT_TYPES = ("application/vnd.docker.distribution.events.v1+json", "application/json")
MAX_EVENT_ID_LENGTH = 100


# --- errors -----------------------------------------------------------------------------


class InstanceNotFound(DomainError):
    code = "ResourceNotFound.Instance"
    http_status = 404
    default_message = "No registry instance with that name exists."


class InstanceExists(DomainError):
    code = "ResourceInUse.InstanceExists"
    http_status = 409
    default_message = "A registry instance with that name already exists."


class InstanceInUse(DomainError):
    code = "ResourceInUse.Instance"
    http_status = 409
    default_message = "The instance still has namespaces; delete them first."


class DomainNameTaken(ValidationFailed):
    """Another instance already answers to the domain name (image verification finds the
    instance by domain). The other instance is not named: the caller may not see it."""

    code = "ResourceInUse.DomainName"
    http_status = 409


class NamespaceExists(DomainError):
    code = "ResourceInUse.NamespaceExists"
    http_status = 409
    default_message = "A namespace with that name already exists in the instance."


# --- instances --------------------------------------------------------------------------


def hash_webhook_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_webhook_token() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, hash_webhook_token(token)


def get_instance(*, name: str) -> Instance:
    instance = Instance.objects.filter(name=name).first() if isinstance(name, str) else None
    if instance is None:
        raise InstanceNotFound(f"No registry instance named {str(name)[:60]!r} exists.")
    return instance


def _field_errors(model, values: Mapping[str, Any]) -> dict[str, list[str]]:
    """Run the model fields' own validators (the same ones the admin forms use)."""
    errors: dict[str, list[str]] = {}
    for name, value in values.items():
        model_field = model._meta.get_field(name)
        try:
            model_field.clean(value, None)
        except ValidationError as exc:
            errors[name] = list(exc.messages)
    return errors


def _raise_if(errors: dict[str, list[str]]) -> None:
    if errors:
        name, messages = next(iter(errors.items()))
        raise ValidationFailed(f"Invalid {name}: {messages[0]}", fields=errors)


def _normalise_domains(domains: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for domain in domains:
        value = (domain or "").strip().lower()
        if value and value not in seen:
            seen.append(value)
    return seen


def _domain_errors(domain: str) -> list[str]:
    errors = _field_errors(InstanceDomain, {"name": domain}).get("name", [])
    if not errors and ":" in domain:
        port = int(domain.rsplit(":", 1)[1])
        if not 1 <= port <= 65535:
            errors = [f"Port {port} is outside 1-65535."]
    return errors


def validate_instance_fields(
    *,
    name: str | None = None,
    region: str,
    backend_url: str,
    auth_type: str,
    username: str,
    secret: str | None,
    secret_env: str,
    default_domain: str,
    custom_domains: Sequence[str],
    has_stored_secret: bool = False,
    current_backend_url: str | None = None,
    instance_id: int | None = None,
) -> None:
    """The rules for an instance, shared by the admin form, the API and the services.

    ``secret`` None means "keep the stored one" (``has_stored_secret`` says if there is one).
    ``current_backend_url``: the URL the stored secret was sealed for, on a change; when
    ``backend_url`` leaves its origin the stored secret cannot come along.
    ``instance_id``: the instance being changed (its own domain names are not "taken").
    """
    moved = current_backend_url is not None and not same_origin(current_backend_url, backend_url)
    if moved:
        has_stored_secret = False
    values: dict[str, Any] = {
        "backend_url": backend_url,
        "username": username,
        "secret_env": secret_env,
    }
    if name is not None:
        values["name"] = name
    errors = _field_errors(Instance, values)
    if "backend_url" not in errors and not backend_url.lower().startswith(("http://", "https://")):
        errors["backend_url"] = ["Use an http:// or https:// URL."]
    elif "backend_url" not in errors and (
        urlsplit(backend_url).username or urlsplit(backend_url).password
    ):
        # A URL is shown in lists, logs and errors: credentials belong in the sealed secret.
        errors["backend_url"] = ["Put credentials in the authentication fields, not in the URL."]
    elif "backend_url" not in errors and ("?" in backend_url or "#" in backend_url):
        # The client appends /v2/... to the URL: a query or fragment would swallow that path.
        errors["backend_url"] = [
            "Give the registry's base URL without a query string (?...) or fragment (#...), "
            "like https://registry.example.com."
        ]
    if "backend_url" not in errors:
        problem = network.backend_url_problem(backend_url)
        if problem:
            errors["backend_url"] = [problem]
    env_problems = secret_env_errors(secret_env) if "secret_env" not in errors else []
    if not env_problems and secret_env and "backend_url" not in errors:
        env_problems = secret_env_binding_errors(secret_env, backend_url)
    if env_problems:
        errors["secret_env"] = env_problems
    if region not in settings.KMS_REGIONS:
        errors["region"] = [
            f"Unknown region {region!r}; choose one of {', '.join(settings.KMS_REGIONS)}."
        ]
    if auth_type not in AuthType.values:
        errors["auth_type"] = [
            f"Unknown auth type {auth_type!r}; choose one of {', '.join(AuthType.values)}."
        ]
    elif auth_type == AuthType.NONE:
        if username or secret or secret_env:
            errors["auth_type"] = ["Auth type 'none' takes no username, secret or secret_env."]
    else:
        if secret and secret_env:
            errors["secret"] = ["Give either a secret or secret_env (an environment variable)."]
        has_secret = bool(secret) or bool(secret_env) or (secret is None and has_stored_secret)
        if not has_secret and moved:
            errors["secret"] = [
                f"backend_url moves from {origin_of(current_backend_url or '')} to "
                f"{origin_of(backend_url)}: the stored credential is only ever sent to the "
                "origin it was given for. Give the secret (or secret_env) again in the "
                "same change."
            ]
        elif not has_secret:
            errors["secret"] = [
                f"Auth type {auth_type!r} needs a secret (password or token) or secret_env."
            ]
        if auth_type == AuthType.BASIC and not username:
            errors["username"] = ["Auth type 'basic' needs a username."]
    domain_errors = (
        _domain_errors(default_domain) if default_domain else ["This field is required."]
    )
    if domain_errors:
        errors["default_domain"] = domain_errors
    for domain in custom_domains:
        problems = _domain_errors(domain)
        if problems:
            errors.setdefault("custom_domains", []).append(f"{domain}: {problems[0]}")
        elif domain == default_domain:
            errors.setdefault("custom_domains", []).append(
                f"{domain} is already the default domain."
            )
    _raise_if(errors)
    _raise_if_domains_taken(default_domain, custom_domains, instance_id=instance_id)


def _raise_if_domains_taken(
    default_domain: str, custom_domains: Sequence[str], *, instance_id: int | None
) -> None:
    taken = set(
        InstanceDomain.objects.filter(name__in=[default_domain, *custom_domains])
        .exclude(instance_id=instance_id)
        .values_list("name", flat=True)
    )
    if not taken:
        return
    errors: dict[str, list[str]] = {}
    message = "{} is already a domain name of another registry instance."
    if default_domain in taken:
        errors["default_domain"] = [message.format(default_domain)]
    for domain in custom_domains:
        if domain in taken:
            errors.setdefault("custom_domains", []).append(message.format(domain))
    first = next(iter(errors.values()))[0]
    raise DomainNameTaken(first, fields=errors)


def _store_secret(instance: Instance, secret: str) -> None:
    seal_for(instance, secret)


def _replace_domains(instance: Instance, domains: Sequence[str]) -> None:
    """Make the instance's domain rows its default domain plus ``domains`` (custom).

    The unique name constraint settles a race with another instance claiming the same
    name: the loser gets DomainNameTaken and its whole change rolls back.
    """
    wanted = {instance.default_domain: True, **dict.fromkeys(domains, False)}
    rows = instance.domains
    try:
        with transaction.atomic():
            rows.exclude(name__in=wanted).delete()
            # Clear a moved default flag first: one default row per instance.
            rows.filter(is_default=True).exclude(name=instance.default_domain).update(
                is_default=False
            )
            existing = set(rows.values_list("name", flat=True))
            for name, is_default in wanted.items():
                if name in existing:
                    rows.filter(name=name).exclude(is_default=is_default).update(
                        is_default=is_default
                    )
                else:
                    InstanceDomain.objects.create(
                        instance=instance, name=name, is_default=is_default
                    )
    except IntegrityError:
        _raise_if_domains_taken(instance.default_domain, domains, instance_id=instance.pk)
        raise


def create_instance(
    *,
    name: str,
    backend_url: str,
    default_domain: str,
    region: str | None = None,
    description: str = "",
    auth_type: str = AuthType.NONE,
    username: str = "",
    secret: str = "",
    secret_env: str = "",
    custom_domains: Sequence[str] = (),
) -> tuple[Instance, str]:
    """Create an instance; returns it and its webhook token (shown once, stored hashed)."""
    region = region or settings.KMS_DEFAULT_REGION
    default_domain = (default_domain or "").strip().lower()
    domains = _normalise_domains(custom_domains)
    backend_url = (backend_url or "").strip().rstrip("/")
    # First: re-creating an instance would otherwise be refused for its own domain names.
    if isinstance(name, str) and Instance.objects.filter(name=name).exists():
        raise InstanceExists(f"A registry instance named {name!r} already exists.", name=name)
    validate_instance_fields(
        name=name,
        region=region,
        backend_url=backend_url,
        auth_type=auth_type,
        username=username,
        secret=secret,
        secret_env=secret_env,
        default_domain=default_domain,
        custom_domains=domains,
    )
    token, token_hash = _new_webhook_token()
    instance = Instance(
        name=name,
        region=region,
        description=description,
        backend_url=backend_url,
        auth_type=auth_type,
        username=username,
        secret_env=secret_env,
        default_domain=default_domain,
        webhook_token_hash=token_hash,
    )
    try:
        with transaction.atomic():
            instance.save(force_insert=True)
            if secret:
                _store_secret(instance, secret)  # the pk is part of the sealing context
                instance.save(update_fields=["sealed_secret", "secret_master_key_version"])
            _replace_domains(instance, domains)
            audit.record(
                "registry.instance.created",
                obj=instance,
                instance_name=name,
                details={
                    "region": region,
                    "backend_url": backend_url,
                    "auth_type": auth_type,
                    "username": username,
                    "default_domain": default_domain,
                    "custom_domains": domains,
                },
            )
    except IntegrityError:
        raise InstanceExists(
            f"A registry instance named {name!r} already exists.", name=name
        ) from None
    logger.info("registry instance created name=%s backend=%s", name, backend_url)
    return instance, token


_UNCHANGED: Any = object()


def update_instance(
    *,
    instance: Instance,
    region: str = _UNCHANGED,
    description: str = _UNCHANGED,
    backend_url: str = _UNCHANGED,
    auth_type: str = _UNCHANGED,
    username: str = _UNCHANGED,
    secret: str | None = None,
    secret_env: str = _UNCHANGED,
    default_domain: str = _UNCHANGED,
    custom_domains: Sequence[str] | None = None,
) -> Instance:
    """Change an instance. The name is fixed (the registry's webhook URL contains it).

    ``secret`` None keeps the stored secret, ``""`` removes it, anything else replaces it.
    Switching ``auth_type`` to ``none`` drops the stored credentials. Moving
    ``backend_url`` to another origin (scheme, host, port) drops the stored secret and
    ``secret_env`` unless the same call gives them again: a credential given for one host
    is never sent to another (refused with a precise message while the auth type needs one).
    Audited (``registry.instance.updated``) with the changed fields, never a secret value.
    """

    def pick(value, current):
        return current if value is _UNCHANGED else value

    with transaction.atomic():
        # The stored row, not the caller's copy (a ModelForm has already changed that one):
        # the origin the secret was sealed for is the one in the database.
        instance = Instance.objects.select_for_update().get(pk=instance.pk)
        new_auth = pick(auth_type, instance.auth_type)
        dropping = new_auth == AuthType.NONE and auth_type is not _UNCHANGED
        new_username = pick(username, "" if dropping else instance.username)
        new_secret_env = pick(secret_env, "" if dropping else instance.secret_env)
        if dropping and secret is None:
            secret = ""
        new_domain = pick(default_domain, instance.default_domain).strip().lower()
        domains = (
            _normalise_domains(custom_domains)
            if custom_domains is not None
            else sorted(instance.domains.filter(is_default=False).values_list("name", flat=True))
        )
        new_backend = pick(backend_url, instance.backend_url).strip().rstrip("/")
        if not same_origin(instance.backend_url, new_backend):
            if secret is None:
                secret = ""
            if secret_env is _UNCHANGED:
                new_secret_env = ""
        if secret_env is not _UNCHANGED and secret_env and secret is None:
            secret = ""  # an environment variable replaces the stored secret
        if secret and secret_env is _UNCHANGED:
            new_secret_env = ""  # a stored secret replaces the environment variable
        validate_instance_fields(
            region=pick(region, instance.region),
            backend_url=new_backend,
            auth_type=new_auth,
            username=new_username,
            secret=secret,
            secret_env=new_secret_env,
            default_domain=new_domain,
            custom_domains=domains,
            has_stored_secret=instance.sealed_secret is not None,
            current_backend_url=instance.backend_url,
            instance_id=instance.pk,
        )
        before = snapshot(instance)
        instance.region = pick(region, instance.region)
        instance.description = pick(description, instance.description)
        instance.backend_url = new_backend
        instance.auth_type = new_auth
        instance.username = new_username
        instance.secret_env = new_secret_env
        instance.default_domain = new_domain
        if secret is not None:
            _store_secret(instance, secret)
        instance.save()
        _replace_domains(instance, domains)
        audit_instance_updated(instance, before, secret_given=bool(secret))
    logger.info("registry instance updated name=%s", instance.name)
    return instance


def delete_instance(*, instance: Instance) -> None:
    """Delete an instance without namespaces; audited (``registry.instance.deleted``)."""
    with transaction.atomic():
        if instance.namespaces.exists():
            raise InstanceInUse(
                f"Instance {instance.name} still has {instance.namespaces.count()} namespace(s); "
                "delete them first.",
                name=instance.name,
            )
        # Recorded while the row exists (the event names it by id); a refused delete rolls
        # the events back with it. Memberships go through the service, so their end is
        # audited too (the cascade would remove them silently).
        audit_instance_deleted(instance)
        for membership in InstanceMembership.objects.select_related("user", "instance").filter(
            instance=instance
        ):
            revoke_membership(membership=membership)
        try:
            instance.delete()
        except ProtectedError:
            raise InstanceInUse(
                f"Instance {instance.name} is still in use.", name=instance.name
            ) from None
    logger.info("registry instance deleted name=%s", instance.name)


@transaction.atomic  # the audit event commits with the new token hash
def rotate_webhook_token(*, instance: Instance) -> str:
    """A new webhook token; the old one stops working at once. Returned once, stored hashed."""
    token, token_hash = _new_webhook_token()
    Instance.objects.filter(pk=instance.pk).update(
        webhook_token_hash=token_hash,
        webhook_token_rotated_at=timezone.now(),
        updated_at=timezone.now(),
    )
    audit.record(
        "registry.instance.webhook_token_rotated", obj=instance, instance_name=instance.name
    )
    instance.webhook_token_hash = token_hash
    logger.info("registry instance webhook token rotated name=%s", instance.name)
    return token


def authenticate_webhook(*, instance: Instance, token: str | None) -> bool:
    """Constant-time comparison of the token's hash with the stored one."""
    if not token or not isinstance(token, str):
        return False
    return hmac.compare_digest(hash_webhook_token(token), instance.webhook_token_hash)


def authenticated_webhook_instance(*, name: str, token: str | None) -> Instance | None:
    """The instance ``name`` if ``token`` is its webhook token; None for a wrong token and
    for an unknown instance alike (a hash is compared either way)."""
    instance = Instance.objects.filter(name=name).first() if isinstance(name, str) else None
    stored = instance.webhook_token_hash if instance is not None else _NO_INSTANCE_HASH
    if not token or not isinstance(token, str):
        return None
    if not hmac.compare_digest(hash_webhook_token(token), stored) or instance is None:
        return None
    return instance


# Compared against when the instance does not exist; no token hashes to it in practice.
_NO_INSTANCE_HASH = "0" * 64


def reseal_instance_secrets() -> int:
    """Re-seal stored registry credentials under the current master key (after a rotation)."""
    keyring = master_keyring()
    resealed = 0
    stale = Instance.objects.filter(sealed_secret__isnull=False).exclude(
        secret_master_key_version=keyring.current
    )
    for pk in stale.values_list("pk", flat=True):
        with transaction.atomic():
            instance = Instance.objects.select_for_update().get(pk=pk)
            current = instance.secret_master_key_version == keyring.current
            if instance.sealed_secret is None or current:
                continue
            _store_secret(instance, instance.secret())
            instance.save(update_fields=["sealed_secret", "secret_master_key_version"])
            resealed += 1
    return resealed


# --- registry configuration --------------------------------------------------------------


def webhook_path(*, instance: Instance) -> str:
    return reverse("registry-webhook", kwargs={"instance_name": instance.name})


_YAML_PLAIN = re.compile(r"[A-Za-z/][A-Za-z0-9_./:+-]*|[0-9]+(?:ns|us|ms|s|m|h)")
_YAML_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _YAML_PLAIN.fullmatch(text) and text.lower() not in _YAML_RESERVED:
        return text
    return json.dumps(text)  # a JSON string is a valid double-quoted YAML scalar


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML for dicts, lists, strings, numbers and booleans (enough for configs)."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, Mapping | list) and item:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(item, indent + 1))
            elif isinstance(item, Mapping | list):
                lines.append(f"{pad}{key}: {'{}' if isinstance(item, Mapping) else '[]'}")
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping) and item:
                nested = to_yaml(item, indent + 1).splitlines()
                lines.append(f"{pad}- {nested[0].strip()}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
    else:
        lines.append(f"{pad}{_yaml_scalar(value)}")
    return "\n".join(lines)


def notifications_settings(*, instance: Instance, token: str, webhook_url: str) -> dict:
    """The registry's ``notifications:`` section as data (see ``notifications_config``)."""
    return {
        "notifications": {
            "events": {"includereferences": True},
            "endpoints": [
                {
                    "name": f"signet-{instance.name}",
                    "url": webhook_url,
                    "headers": {"Authorization": [f"Bearer {token}"]},
                    "timeout": "2s",
                    "threshold": 5,
                    "backoff": "1s",
                    "ignore": {
                        "mediatypes": ["application/octet-stream"],
                        "actions": ["pull"],
                    },
                }
            ],
        }
    }


def notifications_config(*, instance: Instance, token: str, webhook_url: str) -> str:
    """The exact ``notifications:`` block to paste into the registry's config.yml.

    ``webhook_url`` is the absolute URL of ``webhook_path(instance=...)`` as the registry
    reaches Signet (for example ``request.build_absolute_uri(webhook_path(...))``).
    """
    data = notifications_settings(instance=instance, token=token, webhook_url=webhook_url)
    return to_yaml(data) + "\n"


# --- namespaces -------------------------------------------------------------------------


def create_namespace(*, instance: Instance, name: str, description: str = "") -> Namespace:
    errors = _field_errors(Namespace, {"name": name, "description": description})
    _raise_if(errors)
    if Namespace.objects.filter(instance=instance, name=name).exists():
        raise NamespaceExists(
            f"Namespace {name!r} already exists in instance {instance.name}.", name=name
        )
    try:
        with transaction.atomic():
            namespace = Namespace.objects.create(
                instance=instance, name=name, description=description
            )
            _audit_namespace_created(namespace, details={"description": description})
    except IntegrityError:
        raise NamespaceExists(
            f"Namespace {name!r} already exists in instance {instance.name}.", name=name
        ) from None
    logger.info("registry namespace created instance=%s name=%s", instance.name, name)
    return namespace


def _audit_namespace_created(namespace: Namespace, *, details: dict[str, Any]) -> None:
    audit.record(
        "registry.namespace.created",
        obj=namespace,
        instance=namespace.instance,
        instance_name=namespace.instance.name,
        namespace_name=namespace.name,
        details=details,
    )


def update_namespace(*, namespace: Namespace, description: str) -> Namespace:
    _raise_if(_field_errors(Namespace, {"description": description}))
    namespace.description = description
    namespace.save(update_fields=["description"])
    return namespace


def delete_namespace(*, namespace: Namespace) -> None:
    """Delete a namespace's records (not the images in the registry)."""
    with transaction.atomic():
        manifests = list(
            Manifest.objects.filter(repository__namespace=namespace).select_related(
                "repository__namespace__instance"
            )
        )
        if manifests:
            _call_handlers(
                settings.REGISTRY_DELETE_HANDLERS,
                instance=namespace.instance,
                manifests=manifests,
                source="namespace-delete",
                raise_errors=True,
            )
        # Recorded before the row goes (the event keeps its id), in the same transaction.
        audit.record(
            "registry.namespace.deleted",
            obj=namespace,
            instance=namespace.instance,
            instance_name=namespace.instance.name,
            namespace_name=namespace.name,
            details={
                "repositories": namespace.repositories.count(),
                "manifests": len(manifests),
                # Memberships narrowed to it lose it (those narrowed to it alone: all).
                "memberships_narrowed": namespace.memberships.count(),
            },
        )
        namespace.delete()
    logger.info(
        "registry namespace deleted instance=%s name=%s", namespace.instance.name, namespace.name
    )


# --- recording pushes and deletes -------------------------------------------------------


class DeleteHandlerFailed(DomainError):
    """A delete handler failed: the delete is refused so nothing it guards is orphaned."""

    code = "FailedOperation.DeleteHandlerFailed"
    http_status = 503


def _call_handlers(paths: Sequence[str], *, raise_errors: bool = False, **kwargs: Any) -> int:
    """Call each handler in a savepoint; returns how many failed (logged, rolled back).

    Delete handlers pass ``raise_errors``: their work (queuing the removal of what hangs
    off the rows) must not be skipped while the rows go, so a failure refuses the whole
    delete (503; the registry redelivers the event) instead of orphaning anything.
    """
    failures = 0
    for path in paths:
        try:
            handler = import_string(path)
            with transaction.atomic():
                handler(**kwargs)
        except Exception:
            failures += 1
            logger.exception("registry handler %s failed; its changes were rolled back", path)
            if raise_errors:
                raise DeleteHandlerFailed(
                    f"Deleting is refused for now: the delete handler {path} failed (logged). "
                    "Nothing was deleted; try again."
                ) from None
    return failures


@dataclass
class RecordResult:
    received: int = 0
    processed: int = 0
    ignored: int = 0
    duplicates: int = 0
    namespaces_created: int = 0
    repositories_created: int = 0
    manifests_created: int = 0
    manifests_deleted: int = 0
    tags_created: int = 0
    tags_moved: int = 0
    tags_unchanged: int = 0
    tags_deleted: int = 0
    handler_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Reference:
    digest: str
    media_type: str = ""
    size: int | None = None
    platform: str = ""


@dataclass(frozen=True)
class Event:
    """One validated notification."""

    index: int
    id: str
    action: str
    repository: str
    digest: str = ""
    tag: str = ""
    media_type: str = ""
    size: int | None = None
    timestamp: datetime | None = None
    references: tuple[Reference, ...] = ()

    @property
    def is_manifest(self) -> bool:
        return self.media_type in MANIFEST_MEDIA_TYPES or self.media_type in INDEX_MEDIA_TYPES


def is_signature_tag(tag: str) -> bool:
    return bool(_SIGNATURE_TAG_RE.fullmatch(tag))


def namespace_of(repository: str) -> str | None:
    """The namespace (first path segment) Signet files a repository under, if it has one."""
    if "/" not in repository:
        return None
    namespace = repository.split("/", 1)[0]
    return namespace if _NAMESPACE_RE.fullmatch(namespace) else None


def _platform(descriptor: Mapping[str, Any]) -> str:
    platform = descriptor.get("platform")
    if not isinstance(platform, Mapping):
        return ""
    parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
    return "/".join(str(part) for part in parts if isinstance(part, str) and part)[:100]


def _fail(path: str, message: str) -> None:
    raise ValidationFailed(f"{path}: {message}", fields={path: [message]})


def _is_count(value: Any) -> bool:
    # Below 2**63: what a BigIntegerField holds on every database.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _parse_event(index: int, raw: Any) -> Event:
    where = f"events[{index}]"
    if not isinstance(raw, Mapping):
        _fail(where, "each event must be a JSON object.")
    event_id = raw.get("id")
    if not isinstance(event_id, str) or not event_id.strip():
        _fail(f"{where}.id", "is required (a non-empty string).")
    if len(event_id) > MAX_EVENT_ID_LENGTH:
        _fail(f"{where}.id", f"must be at most {MAX_EVENT_ID_LENGTH} characters.")
    action = raw.get("action")
    if not isinstance(action, str) or not action or len(action) > 20:
        _fail(f"{where}.action", "is required (push, pull, mount or delete).")
    target = raw.get("target")
    if not isinstance(target, Mapping):
        _fail(f"{where}.target", "is required (a JSON object).")
    repository = target.get("repository")
    if (
        not isinstance(repository, str)
        or len(repository) > REPOSITORY_MAX_LENGTH
        or not _REPOSITORY_RE.fullmatch(repository)
    ):
        _fail(
            f"{where}.target.repository",
            "is not a valid repository name (lowercase path components separated by '/', "
            f"at most {REPOSITORY_MAX_LENGTH} characters).",
        )
    media_type = target.get("mediaType", "")
    if not isinstance(media_type, str) or len(media_type) > 255:
        _fail(f"{where}.target.mediaType", "must be a string of at most 255 characters.")
    tag = target.get("tag", "")
    if tag and (not isinstance(tag, str) or not _TAG_RE.fullmatch(tag)):
        _fail(f"{where}.target.tag", "is not a valid tag.")
    size = target.get("size")
    if size is not None and not _is_count(size):
        _fail(f"{where}.target.size", "must be a non-negative integer.")
    digest = target.get("digest", "")
    acted_on = action == "delete" or (
        action == "push" and media_type in MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES
    )
    if digest and not isinstance(digest, str):
        _fail(f"{where}.target.digest", "must be a string.")
    if acted_on and digest and not _DIGEST_RE.fullmatch(digest):
        _fail(f"{where}.target.digest", "is not a valid digest (sha256:<64 lowercase hex>).")
    if action == "push" and acted_on and not digest:
        _fail(f"{where}.target.digest", "is required for a manifest push.")
    if action == "delete" and not digest and not tag:
        _fail(f"{where}.target", "a delete event names a digest or a tag.")
    references: list[Reference] = []
    raw_references = target.get("references")
    if raw_references is not None:
        if not isinstance(raw_references, list):
            _fail(f"{where}.target.references", "must be a list.")
        for position, descriptor in enumerate(raw_references):
            path = f"{where}.target.references[{position}]"
            if not isinstance(descriptor, Mapping):
                _fail(path, "must be a JSON object.")
            child = descriptor.get("digest")
            if not isinstance(child, str) or not _DIGEST_RE.fullmatch(child):
                _fail(f"{path}.digest", "is not a valid digest (sha256:<64 lowercase hex>).")
            child_type = descriptor.get("mediaType", "")
            child_size = descriptor.get("size")
            references.append(
                Reference(
                    digest=child,
                    media_type=child_type[:255] if isinstance(child_type, str) else "",
                    size=child_size if _is_count(child_size) else None,
                    platform=_platform(descriptor),
                )
            )
    timestamp = None
    raw_timestamp = raw.get("timestamp")
    if raw_timestamp is not None:
        try:
            timestamp = datetime.fromisoformat(raw_timestamp)
        except (TypeError, ValueError):
            _fail(f"{where}.timestamp", "is not an RFC 3339 time.")
        assert timestamp is not None
        if timezone.is_naive(timestamp):
            _fail(f"{where}.timestamp", "needs a time zone (RFC 3339).")
        try:
            timestamp.astimezone(UTC)
        except OverflowError:
            _fail(f"{where}.timestamp", "is out of range.")
    # PostgreSQL text cannot hold NUL characters: refuse them here, with the field's name.
    for field_path, value in (
        (f"{where}.id", event_id),
        (f"{where}.target.mediaType", media_type),
        *(
            (f"{where}.target.references[{n}].mediaType", r.media_type)
            for n, r in enumerate(references)
        ),
    ):
        if "\x00" in value:
            _fail(field_path, "must not contain NUL characters.")
    return Event(
        index=index,
        id=event_id,
        action=action,
        repository=repository,
        digest=digest or "",
        tag=tag or "",
        media_type=media_type,
        size=size,
        timestamp=timestamp,
        references=tuple(references),
    )


def parse_envelope(envelope: Any) -> list[Event]:
    """Validate a whole notification envelope; ValidationFailed names the first bad field."""
    if not isinstance(envelope, Mapping):
        _fail("events", 'the body must be a JSON object with an "events" list.')
    events = envelope.get("events")
    if not isinstance(events, list):
        _fail("events", 'is required: the body must be a JSON object with an "events" list.')
    return [_parse_event(index, raw) for index, raw in enumerate(events)]


class _Recorder:
    """Writes pushes and deletes for one instance inside the caller's transaction."""

    def __init__(self, *, instance: Instance, source: str, result: RecordResult) -> None:
        self.instance = instance
        self.source = source
        self.result = result
        self.namespaces: dict[str, Namespace] = {}
        self.repositories: dict[str, Repository] = {}
        self.new_manifests: list[Manifest] = []
        self.changed_tags: list[Tag] = []

    # -- lookups ---------------------------------------------------------------------------

    def repository(self, name: str, *, create: bool) -> Repository | None:
        if name in self.repositories:
            return self.repositories[name]
        namespace_name = namespace_of(name)
        if namespace_name is None:
            return None
        repository = (
            Repository.objects.select_related("namespace__instance")
            .filter(namespace__instance=self.instance, name=name)
            .first()
        )
        if repository is None:
            if not create:
                return None
            namespace = self.namespaces.get(namespace_name)
            if namespace is None:
                namespace, created = Namespace.objects.get_or_create(
                    instance=self.instance, name=namespace_name
                )
                self.result.namespaces_created += int(created)
                if created:
                    # The actor is the webhook or the sync command (the audit context).
                    _audit_namespace_created(
                        namespace, details={"source": self.source, "repository": name}
                    )
                self.namespaces[namespace_name] = namespace
            repository, created = Repository.objects.get_or_create(namespace=namespace, name=name)
            self.result.repositories_created += int(created)
            namespace.instance = self.instance
            repository.namespace = namespace
        self.repositories[name] = repository
        return repository

    # -- pushes ----------------------------------------------------------------------------

    def manifest(
        self,
        repository: Repository,
        *,
        digest: str,
        media_type: str,
        size: int | None,
        at: datetime,
        references: Sequence[Reference] = (),
    ) -> Manifest:
        manifest, created = Manifest.objects.get_or_create(
            repository=repository,
            digest=digest,
            defaults={"media_type": media_type, "size": size, "pushed_at": at},
        )
        manifest.repository = repository
        if created:
            self.result.manifests_created += 1
            self.new_manifests.append(manifest)
            # An index recorded earlier may be waiting for this child.
            ManifestReference.objects.filter(
                parent__repository=repository, child_digest=digest, child__isnull=True
            ).update(child=manifest)
        if manifest.is_index and references and (created or not manifest.child_references.exists()):
            self.link_children(manifest, references)
        return manifest

    def link_children(self, manifest: Manifest, references: Sequence[Reference]) -> None:
        digests = [reference.digest for reference in references]
        known = dict(
            Manifest.objects.filter(repository=manifest.repository, digest__in=digests).values_list(
                "digest", "pk"
            )
        )
        ManifestReference.objects.bulk_create(
            [
                ManifestReference(
                    parent=manifest,
                    child_id=known.get(reference.digest),
                    child_digest=reference.digest,
                    media_type=reference.media_type,
                    size=reference.size,
                    platform=reference.platform,
                )
                for reference in references
            ],
            ignore_conflicts=True,
        )

    def tag(self, repository: Repository, manifest: Manifest, name: str, at: datetime) -> None:
        tag = (
            Tag.objects.select_for_update(of=("self",))
            .select_related("manifest")
            .filter(repository=repository, name=name)
            .first()
        )
        if tag is None:
            try:
                with transaction.atomic():
                    tag = Tag.objects.create(
                        repository=repository,
                        name=name,
                        manifest=manifest,
                        pushed_at=at,
                        updated_at=at,
                    )
            except IntegrityError:  # created meanwhile by a concurrent delivery
                tag = (
                    Tag.objects.select_for_update(of=("self",))
                    .select_related("manifest")
                    .get(repository=repository, name=name)
                )
            else:
                TagHistory.objects.create(tag=tag, to_digest=manifest.digest, moved_at=at)
                self.result.tags_created += 1
                self.changed_tags.append(tag)
                return
        if tag.manifest_id == manifest.pk:
            self.result.tags_unchanged += 1
            return
        previous = tag.manifest.digest
        tag.manifest = manifest
        tag.updated_at = max(at, tag.pushed_at)
        tag.save(update_fields=["manifest", "updated_at"])
        TagHistory.objects.create(
            tag=tag, from_digest=previous, to_digest=manifest.digest, moved_at=tag.updated_at
        )
        tag.repository = repository
        self.result.tags_moved += 1
        self.changed_tags.append(tag)

    def flush_push_handlers(self) -> None:
        if not (self.new_manifests or self.changed_tags):
            return
        manifests, tags = self.new_manifests, self.changed_tags
        self.new_manifests, self.changed_tags = [], []
        if settings.REGISTRY_PUSH_HANDLERS:
            self.result.handler_errors += _call_handlers(
                settings.REGISTRY_PUSH_HANDLERS,
                instance=self.instance,
                manifests=manifests,
                tags=tags,
                source=self.source,
            )

    # -- deletes ---------------------------------------------------------------------------

    def delete_manifest(self, repository_name: str, digest: str) -> str:
        repository = self.repository(repository_name, create=False)
        manifest = (
            Manifest.objects.filter(repository=repository, digest=digest).first()
            if repository
            else None
        )
        if manifest is None or repository is None:
            return "not recorded in Signet"
        manifest.repository = repository
        self.flush_push_handlers()  # handlers see pushes before a later delete
        tags = manifest.tags.count()
        try:
            with transaction.atomic():
                _call_handlers(
                    settings.REGISTRY_DELETE_HANDLERS,
                    instance=self.instance,
                    manifests=[manifest],
                    source=self.source,
                    raise_errors=True,
                )
                manifest.delete()
        except (ProtectedError, RestrictedError) as exc:
            logger.warning(
                "registry manifest %s@%s not deleted: still referenced (%s)",
                repository_name,
                digest,
                type(exc).__name__,
            )
            return "IGNORED:still referenced by other records"
        self.result.manifests_deleted += 1
        self.result.tags_deleted += tags
        return ""

    def delete_tag(self, repository_name: str, tag: str) -> str:
        repository = self.repository(repository_name, create=False)
        if repository is None:
            return "not recorded in Signet"
        deleted = (
            Tag.objects.filter(repository=repository, name=tag).delete()[1].get(Tag._meta.label, 0)
        )
        if not deleted:
            return "not recorded in Signet"
        self.result.tags_deleted += deleted
        return ""


def _ignore_reason(event: Event) -> str:
    if event.action not in ("push", "delete"):
        return f"{event.action} events are not recorded"
    if event.tag and is_signature_tag(event.tag):
        return "signature artifact tag"
    if event.action == "push" and not event.is_manifest:
        return f"not a manifest ({event.media_type or 'no media type'})"
    if namespace_of(event.repository) is None:
        return "repository is not inside a valid namespace"
    return ""


def _apply(recorder: _Recorder, event: Event, received: datetime) -> tuple[str, str]:
    """Record one event; returns (status, reason)."""
    reason = _ignore_reason(event)
    if reason:
        return EventStatus.IGNORED, reason
    if event.action == "push":
        repository = recorder.repository(event.repository, create=True)
        assert repository is not None
        at = event.timestamp or received
        before = (
            recorder.result.manifests_created,
            recorder.result.tags_created,
            recorder.result.tags_moved,
        )
        manifest = recorder.manifest(
            repository,
            digest=event.digest,
            media_type=event.media_type,
            size=event.size,
            at=at,
            references=event.references,
        )
        if event.tag:
            recorder.tag(repository, manifest, event.tag, at)
        after = (
            recorder.result.manifests_created,
            recorder.result.tags_created,
            recorder.result.tags_moved,
        )
        return EventStatus.PROCESSED, "" if after != before else "already recorded"
    if event.digest:
        outcome = recorder.delete_manifest(event.repository, event.digest)
    else:
        outcome = recorder.delete_tag(event.repository, event.tag)
    if outcome.startswith("IGNORED:"):
        return EventStatus.IGNORED, outcome.removeprefix("IGNORED:")
    return EventStatus.PROCESSED, outcome


def record_events(*, instance: Instance, envelope: Any) -> RecordResult:
    """Record a notification delivery: validate everything, then write it in one transaction.

    Idempotent per event id (a redelivered event is counted in ``duplicates``) and per
    (repository, digest, tag). Makes no call to the registry or the KMS.
    """
    events = parse_envelope(envelope)
    for attempt in range(3):
        try:
            with audit_context.registry_webhook(instance.name):
                return _record(instance=instance, events=events)
        except IntegrityError:
            # A concurrent delivery of the same events won a unique constraint: run again,
            # now seeing its rows (they are duplicates or already recorded).
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _record(*, instance: Instance, events: Sequence[Event]) -> RecordResult:
    result = RecordResult(received=len(events))
    received = timezone.now()
    with transaction.atomic():
        seen = set(
            RegistryEvent.objects.filter(
                instance=instance, event_id__in=[event.id for event in events]
            ).values_list("event_id", flat=True)
        )
        recorder = _Recorder(instance=instance, source="webhook", result=result)
        rows: list[RegistryEvent] = []
        for event in events:
            if event.id in seen:
                result.duplicates += 1
                continue
            seen.add(event.id)
            status, reason = _apply(recorder, event, received)
            if status == EventStatus.IGNORED:
                result.ignored += 1
            else:
                result.processed += 1
            rows.append(
                RegistryEvent(
                    instance=instance,
                    event_id=event.id,
                    action=event.action,
                    repository=event.repository,
                    digest=event.digest if _DIGEST_RE.fullmatch(event.digest) else "",
                    tag=event.tag,
                    media_type=event.media_type,
                    occurred_at=event.timestamp,
                    status=status,
                    reason=reason[:255],
                )
            )
        recorder.flush_push_handlers()
        RegistryEvent.objects.bulk_create(rows)
    logger.info(
        "registry events instance=%s received=%s processed=%s ignored=%s duplicates=%s",
        instance.name,
        result.received,
        result.processed,
        result.ignored,
        result.duplicates,
    )
    return result


# --- sync from the registry -------------------------------------------------------------


@dataclass
class SyncResult:
    repositories: int = 0
    repositories_skipped: int = 0
    namespaces_created: int = 0
    repositories_created: int = 0
    manifests_created: int = 0
    tags_created: int = 0
    tags_updated: int = 0
    tags_unchanged: int = 0
    tags_ignored: int = 0
    handler_errors: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _RemoteTag:
    name: str
    digest: str
    media_type: str
    size: int | None
    children: tuple[Reference, ...] = ()


def parse_index_children(document: Any) -> tuple[Reference, ...]:
    """The child manifests an image index document lists (entries without a valid digest are
    left out)."""
    children = []
    manifests = document.get("manifests") if isinstance(document, Mapping) else None
    for descriptor in manifests if isinstance(manifests, list) else []:
        child = descriptor.get("digest") if isinstance(descriptor, Mapping) else None
        if isinstance(child, str) and _DIGEST_RE.fullmatch(child):
            size = descriptor.get("size")
            children.append(
                Reference(
                    digest=child,
                    media_type=str(descriptor.get("mediaType") or "")[:255],
                    size=size if _is_count(size) else None,
                    platform=_platform(descriptor),
                )
            )
    return tuple(children)


def _index_children(client, repository: str, digest: str) -> tuple[Reference, ...]:
    return parse_index_children(client.get_manifest(repository, digest).json)


def _remote_tags(client, instance: Instance, repository: str, page_size: int, result):
    from registry.errors import RegistryError

    remote: list[_RemoteTag] = []
    known_indexes = set(
        Manifest.objects.filter(
            repository__namespace__instance=instance,
            repository__name=repository,
            media_type__in=INDEX_MEDIA_TYPES,
            child_references__isnull=False,
        ).values_list("digest", flat=True)
    )
    for name in client.list_tags(repository, page_size=page_size):
        if is_signature_tag(name):
            result.tags_ignored += 1
            continue
        try:
            ref = client.head_manifest(repository, name)
            if ref is None:
                continue  # deleted between listing and HEAD
            children: tuple[Reference, ...] = ()
            if ref.media_type in INDEX_MEDIA_TYPES and ref.digest not in known_indexes:
                children = _index_children(client, repository, ref.digest)
                known_indexes.add(ref.digest)
        except RegistryError as exc:
            result.errors.append(f"{repository}:{name}: {exc.message}")
            continue
        if not _DIGEST_RE.fullmatch(ref.digest or ""):
            result.errors.append(f"{repository}:{name}: unsupported digest {ref.digest!r}")
            continue
        remote.append(
            _RemoteTag(
                name=name,
                digest=ref.digest,
                media_type=ref.media_type,
                size=ref.size,
                children=children,
            )
        )
    return remote


def _record_remote(instance: Instance, repository_name: str, remote, result: SyncResult) -> None:
    counts = RecordResult()
    now = timezone.now()
    with transaction.atomic():
        recorder = _Recorder(instance=instance, source="sync", result=counts)
        repository = recorder.repository(repository_name, create=True)
        assert repository is not None
        for item in remote:
            for child in item.children:
                recorder.manifest(
                    repository,
                    digest=child.digest,
                    media_type=child.media_type,
                    size=child.size,
                    at=now,
                )
            manifest = recorder.manifest(
                repository,
                digest=item.digest,
                media_type=item.media_type,
                size=item.size,
                at=now,
                references=item.children,
            )
            recorder.tag(repository, manifest, item.name, now)
        recorder.flush_push_handlers()
    result.namespaces_created += counts.namespaces_created
    result.repositories_created += counts.repositories_created
    result.manifests_created += counts.manifests_created
    result.tags_created += counts.tags_created
    result.tags_updated += counts.tags_moved
    result.tags_unchanged += counts.tags_unchanged
    result.handler_errors += counts.handler_errors


def sync_instance(
    *,
    instance: Instance,
    namespace: str | None = None,
    page_size: int = 100,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
    client=None,
) -> SyncResult:
    """Import repositories, tags and manifests the registry has and Signet does not.

    Walks ``/v2/_catalog`` -> tags -> ``HEAD`` manifest (``GET`` for new indexes, to
    record their children). Tags that point elsewhere are moved (with history); nothing
    is deleted. Safe to run again: a second run changes nothing. Registry calls happen
    outside transactions; each repository is written in its own transaction. Push
    handlers are called with ``source="sync"``. Raises a ``registry.errors.RegistryError``
    naming the registry when it cannot be reached at all.
    """
    from registry.errors import RegistryError

    if namespace is not None and not _NAMESPACE_RE.fullmatch(namespace):
        _fail("namespace", "is not a valid namespace name.")
    result = SyncResult()
    say = progress or (lambda message: None)
    client = client or instance.registry_client()
    client.ping()
    # No transaction is held while talking to the registry. A dry run records each
    # repository in a short transaction it rolls back, so (on SQLite especially) writers
    # are never blocked for the length of a catalog walk.
    for repository in client.catalog(page_size=page_size):
        if namespace is not None and namespace_of(repository) != namespace:
            continue
        if namespace_of(repository) is None:
            result.repositories_skipped += 1
            say(f"skip {repository}: not inside a valid namespace")
            continue
        result.repositories += 1
        try:
            remote = _remote_tags(client, instance, repository, page_size, result)
        except RegistryError as exc:
            result.errors.append(f"{repository}: {exc.message}")
            say(f"error {repository}: {exc.message}")
            continue
        if not remote:
            say(f"[{result.repositories}] {repository}: no tags")
            continue
        before = (result.tags_created, result.tags_updated, result.tags_unchanged)
        if dry_run:
            with transaction.atomic():
                _record_remote(instance, repository, remote, result)
                transaction.set_rollback(True)
        else:
            _record_remote(instance, repository, remote, result)
        say(
            f"[{result.repositories}] {repository}: {len(remote)} tag(s), "
            f"{result.tags_created - before[0]} created, "
            f"{result.tags_updated - before[1]} updated, "
            f"{result.tags_unchanged - before[2]} unchanged"
        )
    return result


def record_manifest(
    *, instance: Instance, repository: str, digest: str, media_type: str, size: int | None
) -> Manifest:
    """Record one manifest the caller has just fetched (and verified) from the registry,
    with its repository and namespace if Signet had forgotten them; push handlers are
    called with ``source="sync"`` (nothing is signed by this)."""
    with transaction.atomic():
        recorder = _Recorder(instance=instance, source="sync", result=RecordResult())
        record = recorder.repository(repository, create=True)
        if record is None:
            raise ValidationFailed(
                f"{repository} is not inside a valid namespace.",
                fields={"repository": ["is not inside a valid namespace."]},
            )
        manifest = recorder.manifest(
            record, digest=digest, media_type=media_type, size=size, at=timezone.now()
        )
        recorder.flush_push_handlers()
    return manifest


def resync_repository(*, instance: Instance, repository: str, client=None) -> SyncResult:
    """Import one repository's tags and manifests again from the registry, e.g. after a
    delete event the registry did not confirm removed Signet's records of a present image.
    Push handlers are called with ``source="sync"`` (nothing is signed by this)."""
    result = SyncResult(repositories=1)
    client = client or instance.registry_client()
    remote = _remote_tags(client, instance, repository, 100, result)
    if remote:
        _record_remote(instance, repository, remote, result)
    return result


# --- reading ----------------------------------------------------------------------------


def tags_queryset() -> QuerySet[Tag]:
    return Tag.objects.select_related("repository__namespace__instance", "manifest")


def manifests_queryset() -> QuerySet[Manifest]:
    return Manifest.objects.select_related("repository__namespace__instance")

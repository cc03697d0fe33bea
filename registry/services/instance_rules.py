"""The rules an instance's fields follow, shared by the admin form, the API and the
services (``validate_instance_fields``), each rule a named part."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from config.errors import ValidationFailed
from registry import network
from registry.errors import DomainNameTaken
from registry.models import AuthType, Instance, InstanceDomain
from registry.secrets import origin_of, same_origin, secret_env_binding_errors, secret_env_errors

Errors = dict[str, list[str]]


def field_errors(model: type[models.Model], values: Mapping[str, Any]) -> Errors:
    """Run the model fields' own validators (the same ones the admin forms use)."""
    errors: Errors = {}
    for name, value in values.items():
        model_field = model._meta.get_field(name)
        assert isinstance(model_field, models.Field)
        try:
            model_field.clean(value, None)
        except ValidationError as exc:
            errors[name] = list(exc.messages)
    return errors


def raise_if(errors: Errors) -> None:
    if errors:
        name, messages = next(iter(errors.items()))
        raise ValidationFailed(f"Invalid {name}: {messages[0]}", fields=errors)


def normalise_domains(domains: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for domain in domains:
        value = (domain or "").strip().lower()
        if value and value not in seen:
            seen.append(value)
    return seen


def _domain_errors(domain: str) -> list[str]:
    errors = field_errors(InstanceDomain, {"name": domain}).get("name", [])
    if not errors and ":" in domain:
        port = int(domain.rsplit(":", 1)[1])
        if not 1 <= port <= 65535:
            errors = [f"Port {port} is outside 1-65535."]
    return errors


def _backend_url_problems(backend_url: str) -> list[str]:
    """Why ``backend_url`` (valid as a URL field) may not be an instance's backend URL."""
    if not backend_url.lower().startswith(("http://", "https://")):
        return ["Use an http:// or https:// URL."]
    parts = urlsplit(backend_url)
    if parts.username or parts.password:
        # A URL is shown in lists, logs and errors: credentials belong in the sealed secret.
        return ["Put credentials in the authentication fields, not in the URL."]
    if "?" in backend_url or "#" in backend_url:
        # The client appends /v2/... to the URL: a query or fragment would swallow that path.
        return [
            "Give the registry's base URL without a query string (?...) or fragment (#...), "
            "like https://registry.example.com."
        ]
    problem = network.backend_url_problem(backend_url)
    return [problem] if problem else []


def _secret_env_problems(
    secret_env: str, backend_url: str, *, check_name: bool, check_binding: bool
) -> list[str]:
    """Why the variable ``secret_env`` may not hold this instance's credential: its name
    (unless the field's validators already refused it), then the origin it is bound to
    (when ``backend_url`` is usable)."""
    problems = secret_env_errors(secret_env) if check_name else []
    if not problems and secret_env and check_binding:
        problems = secret_env_binding_errors(secret_env, backend_url)
    return problems


def _region_problems(region: str) -> list[str]:
    if region in settings.KMS_REGIONS:
        return []
    return [f"Unknown region {region!r}; choose one of {', '.join(settings.KMS_REGIONS)}."]


def _missing_secret_message(auth_type: str, *, moved_from: str | None, backend_url: str) -> str:
    if moved_from is not None:
        return (
            f"backend_url moves from {origin_of(moved_from)} to "
            f"{origin_of(backend_url)}: the stored credential is only ever sent to the "
            "origin it was given for. Give the secret (or secret_env) again in the "
            "same change."
        )
    return f"Auth type {auth_type!r} needs a secret (password or token) or secret_env."


def _credential_problems(
    *,
    auth_type: str,
    username: str,
    secret: str | None,
    secret_env: str,
    has_stored_secret: bool,
    moved_from: str | None,
    backend_url: str,
) -> Errors:
    """What the auth type asks of the username, the secret and ``secret_env``."""
    if auth_type not in AuthType.values:
        choices = ", ".join(AuthType.values)
        return {"auth_type": [f"Unknown auth type {auth_type!r}; choose one of {choices}."]}
    if auth_type == AuthType.NONE:
        if username or secret or secret_env:
            return {"auth_type": ["Auth type 'none' takes no username, secret or secret_env."]}
        return {}
    errors: Errors = {}
    if secret and secret_env:
        errors["secret"] = ["Give either a secret or secret_env (an environment variable)."]
    has_secret = bool(secret) or bool(secret_env) or (secret is None and has_stored_secret)
    if not has_secret:
        errors["secret"] = [
            _missing_secret_message(auth_type, moved_from=moved_from, backend_url=backend_url)
        ]
    if auth_type == AuthType.BASIC and not username:
        errors["username"] = ["Auth type 'basic' needs a username."]
    return errors


def _domain_problems(default_domain: str, custom_domains: Sequence[str]) -> Errors:
    errors: Errors = {}
    default_problems = (
        _domain_errors(default_domain) if default_domain else ["This field is required."]
    )
    if default_problems:
        errors["default_domain"] = default_problems
    for domain in custom_domains:
        problems = _domain_errors(domain)
        if problems:
            errors.setdefault("custom_domains", []).append(f"{domain}: {problems[0]}")
        elif domain == default_domain:
            errors.setdefault("custom_domains", []).append(
                f"{domain} is already the default domain."
            )
    return errors


def _add(errors: Errors, name: str, problems: list[str]) -> None:
    if problems:
        errors[name] = problems


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
    The first field in error names the ``ValidationFailed``; the order below is the order
    of the fields on the form.
    """
    moved = current_backend_url is not None and not same_origin(current_backend_url, backend_url)
    values: dict[str, Any] = {
        "backend_url": backend_url,
        "username": username,
        "secret_env": secret_env,
    }
    if name is not None:
        values["name"] = name
    errors = field_errors(Instance, values)
    if "backend_url" not in errors:
        _add(errors, "backend_url", _backend_url_problems(backend_url))
    _add(
        errors,
        "secret_env",
        _secret_env_problems(
            secret_env,
            backend_url,
            check_name="secret_env" not in errors,
            check_binding="backend_url" not in errors,
        ),
    )
    _add(errors, "region", _region_problems(region))
    errors.update(
        _credential_problems(
            auth_type=auth_type,
            username=username,
            secret=secret,
            secret_env=secret_env,
            has_stored_secret=has_stored_secret and not moved,
            moved_from=current_backend_url if moved else None,
            backend_url=backend_url,
        )
    )
    errors.update(_domain_problems(default_domain, custom_domains))
    raise_if(errors)
    raise_if_domains_taken(default_domain, custom_domains, instance_id=instance_id)


def raise_if_domains_taken(
    default_domain: str, custom_domains: Sequence[str], *, instance_id: int | None
) -> None:
    others = InstanceDomain.objects.filter(name__in=[default_domain, *custom_domains])
    if instance_id is not None:  # its own names are not taken
        others = others.exclude(instance_id=instance_id)
    taken = set(others.values_list("name", flat=True))
    if not taken:
        return
    errors: Errors = {}
    message = "{} is already a domain name of another registry instance."
    if default_domain in taken:
        errors["default_domain"] = [message.format(default_domain)]
    for domain in custom_domains:
        if domain in taken:
            errors.setdefault("custom_domains", []).append(message.format(domain))
    first = next(iter(errors.values()))[0]
    raise DomainNameTaken(first, fields=errors)

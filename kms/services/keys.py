"""Creating keys and changing their description."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from audit import services as audit
from kms import crypto
from kms.errors import AliasAlreadyExists, InvalidParameter
from kms.models import KEY_SPEC_BY_USAGE, Key, KeyUsage
from kms.selectors import get_key
from kms.services.material import master_keyring

logger = logging.getLogger(__name__)

MAX_DESCRIPTION_BYTES = 1024
RESERVED_ALIAS_PREFIX = "kms-"


def validate_key_fields(*, alias: str, description: str, region: str, key_usage: str) -> None:
    """The same rules for the admin form, the API and the service."""
    errors: dict[str, list[str]] = {}
    try:
        Key._meta.get_field("alias").run_validators(alias)
    except ValidationError as exc:
        errors["alias"] = list(exc.messages)
    if not alias:
        errors["alias"] = ["Alias is required."]
    elif alias.lower().startswith(RESERVED_ALIAS_PREFIX):
        errors["alias"] = [f"The alias prefix {RESERVED_ALIAS_PREFIX!r} is reserved."]
    if problem := _description_problem(description):
        errors["description"] = [problem]
    if region not in settings.KMS_REGIONS:
        errors["region"] = [
            f"Unknown region {region!r}; choose one of {', '.join(settings.KMS_REGIONS)}."
        ]
    if key_usage not in KeyUsage.values:
        errors["key_usage"] = [
            f"Unknown key usage {key_usage!r}; choose one of {', '.join(KeyUsage.values)}."
        ]
    if errors:
        field, messages = next(iter(errors.items()))
        raise InvalidParameter(f"Invalid {field}: {messages[0]}", fields=errors)


def create_key(
    *,
    alias: str,
    description: str = "",
    region: str | None = None,
    key_usage: str = KeyUsage.RSA_2048,
    created_by=None,
) -> Key:
    region = region or settings.KMS_DEFAULT_REGION
    validate_key_fields(alias=alias, description=description, region=region, key_usage=key_usage)
    if Key.objects.filter(alias__iexact=alias).exists():
        raise AliasAlreadyExists(f"A key with alias {alias!r} already exists.", alias=alias)
    key_spec = KEY_SPEC_BY_USAGE[KeyUsage(key_usage)]
    private_key = crypto.generate_private_key(key_spec)
    public_pem = crypto.public_key_pem(private_key)
    key = Key(
        alias=alias,
        description=description,
        region=region,
        key_usage=key_usage,
        key_spec=key_spec,
        public_key_pem=public_pem,
        public_key_fingerprint=crypto.fingerprint(public_pem),
        created_by=created_by,
    )
    sealed, version = crypto.seal(
        crypto.private_key_to_der(private_key), keyring=master_keyring(), key_id=str(key.key_id)
    )
    key.sealed_private_key = sealed
    key.master_key_version = version
    try:
        with transaction.atomic():
            key.save(force_insert=True)
            audit.record(
                "kms.key.created",
                obj=key,
                actor=created_by,
                details={"alias": alias, "key_usage": key_usage, "region": region},
            )
    except IntegrityError:
        # Two concurrent creates with one alias: the unique constraint decides.
        raise AliasAlreadyExists(
            f"A key with alias {alias!r} already exists.", alias=alias
        ) from None
    logger.info("kms key created key_id=%s alias=%s usage=%s", key.key_id, alias, key_usage)
    return key


def _description_problem(description: str) -> str | None:
    size = len(description.encode())
    if size > MAX_DESCRIPTION_BYTES:
        return f"Description must be at most {MAX_DESCRIPTION_BYTES} bytes (it is {size})."
    return None


def update_key_description(*, key_id: str, description: str) -> Key:
    if problem := _description_problem(description):
        raise InvalidParameter(problem, fields={"description": [problem]})
    with transaction.atomic():
        key = get_key(key_id=key_id, for_update=True)
        key.description = description
        key.save(update_fields=["description", "updated_at"])
    return key

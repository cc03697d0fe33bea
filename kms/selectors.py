"""Reading keys. The sealed private material is loaded only where a key is really used
(``kms.services.material``)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from kms.errors import InvalidParameter, KeyNotFound
from kms.models import Key, KeyState, KeyUsage


def key_queryset() -> QuerySet[Key]:
    return Key.objects.defer("sealed_private_key")


def get_key(*, key_id: str, for_update: bool = False) -> Key:
    queryset = Key.objects.select_for_update() if for_update else key_queryset()
    try:
        return queryset.get(key_id=key_id)
    except (Key.DoesNotExist, ValidationError, ValueError):
        raise KeyNotFound(f"No key with KeyId {key_id!s} exists.", key_id=str(key_id)) from None


def describe_key(*, key_id: str) -> Key:
    return get_key(key_id=key_id)


def list_keys(
    *,
    key_usage: str | None = None,
    key_state: str | None = None,
    region: str | None = None,
    search_alias: str | None = None,
) -> QuerySet[Key]:
    if key_usage and key_usage not in KeyUsage.values:
        raise InvalidParameter(
            f"KeyUsage must be one of {', '.join(KeyUsage.values)}.",
            fields={"key_usage": [f"Unknown key usage {key_usage!r}."]},
        )
    if key_state and key_state not in KeyState.values:
        raise InvalidParameter(
            f"KeyState must be one of {', '.join(KeyState.values)}.",
            fields={"key_state": [f"Unknown key state {key_state!r}."]},
        )
    if region and region not in settings.KMS_REGIONS:
        raise InvalidParameter(
            f"Region must be one of {', '.join(settings.KMS_REGIONS)}.",
            fields={"region": [f"Unknown region {region!r}."]},
        )
    queryset = key_queryset().order_by("-created_at", "key_id")
    if key_usage:
        queryset = queryset.filter(key_usage=key_usage)
    if key_state:
        queryset = queryset.filter(state=key_state)
    if region:
        queryset = queryset.filter(region=region)
    if search_alias:
        queryset = queryset.filter(alias__icontains=search_alias)
    return queryset

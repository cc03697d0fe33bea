"""Reading keys. The sealed private material is loaded only where a key is really used
(``kms.services.material``)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from kms.errors import KeyNotFound
from kms.filtersets import KeyFilterSet
from kms.models import Key


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
    """ListKeys, newest first; a usage, state or region not among its choices is
    ``InvalidParameter``. The API applies the same ``KeyFilterSet`` to its query."""
    filters = {
        "key_usage": key_usage,
        "key_state": key_state,
        "region": region,
        "search_alias": search_alias,
    }
    queryset = key_queryset().order_by("-created_at", "key_id")
    return KeyFilterSet(filters, queryset=queryset).filtered()

"""ListKeys' filters (``config.filters``), for the API and ``services.list_keys``.

A value outside its choices is ``InvalidParameter``, worded as the cloud KMS words it
(``KeyUsage must be one of ...``).
"""

from __future__ import annotations

from django.conf import settings

from config.filters import ChoiceParamFilter, FilterSet, TextFilter
from kms.errors import InvalidParameter
from kms.models import KeyState, KeyUsage


def _regions() -> list[str]:
    return list(settings.KMS_REGIONS)


class KeyFilterSet(FilterSet):
    error_class = InvalidParameter

    key_usage = ChoiceParamFilter(
        "key_usage",
        choices=KeyUsage.values,
        help_text="Only keys of this usage.",
        summary="KeyUsage must be one of {choices}.",
        message="Unknown key usage {value!r}.",
        echo_limit=None,
    )
    key_state = ChoiceParamFilter(
        "state",
        choices=KeyState.values,
        help_text="Only keys in this state.",
        summary="KeyState must be one of {choices}.",
        message="Unknown key state {value!r}.",
        echo_limit=None,
    )
    region = ChoiceParamFilter(
        "region",
        # Read at each request (settings may differ); so the schema lists no enum.
        choices=_regions,
        help_text="Only keys of this region (one of the KMS regions configured).",
        summary="Region must be one of {choices}.",
        message="Unknown region {value!r}.",
        echo_limit=None,
    )
    search_alias = TextFilter(
        "alias", "icontains", help_text="Only keys whose alias contains this text."
    )

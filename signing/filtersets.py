"""The signing API lists' query parameters (``config.filters``).

``instance`` takes an id or a name (instance names start with a letter); other objects
are named by id, or by name in a ``*_name`` parameter.
"""

from __future__ import annotations

from django.db.models import QuerySet

from config.filters import (
    ChoiceParamFilter,
    FilterSet,
    IdFilter,
    IdOrNameFilter,
    StrictBooleanFilter,
    TextFilter,
)
from registry.models import Namespace
from signing.models import SignatureStatus, Trigger

_INSTANCE_HELP = "Only those of this instance (its id or its name)."


def _id(name: str, field_name: str) -> IdFilter:
    return IdFilter(field_name, help_text=f"Only those of this {name} (its numeric id).")


class PolicyFilterSet(FilterSet):
    instance = IdOrNameFilter("namespace__instance", help_text=_INSTANCE_HELP)
    namespace = _id("namespace", "namespace_id")
    namespace_name = TextFilter(
        "namespace__name", help_text="Only the policy of the namespace with this name."
    )
    disabled = StrictBooleanFilter("disabled", help_text="true or false.")


class SignatureFilterSet(FilterSet):
    status = ChoiceParamFilter(
        "status", choices=SignatureStatus.values, help_text="Only this status."
    )
    trigger = ChoiceParamFilter("trigger", choices=Trigger.values, help_text="Only this trigger.")
    policy = _id("policy", "policy_id")
    instance = IdOrNameFilter("policy__namespace__instance", help_text=_INSTANCE_HELP)
    namespace = _id("namespace", "policy__namespace_id")
    namespace_name = TextFilter(
        "policy__namespace__name", help_text="Only signatures of the namespace with this name."
    )
    repository = _id("repository", "manifest__repository_id")
    repository_name = TextFilter(
        "manifest__repository__name",
        help_text="Only signatures of this repository (its full name).",
    )
    digest = TextFilter(
        "manifest__digest", help_text="Only signatures of the manifest with this digest."
    )


class NamespacePolicyFilterSet(FilterSet):
    """TCR DescribeNamespaces' ``KmsSignPolicy`` filter, and whether the policy is enabled."""

    instance = IdOrNameFilter("instance", help_text=_INSTANCE_HELP)
    kms_sign_policy = StrictBooleanFilter(
        method="filter_has_policy",
        help_text="true: namespaces with a policy; false: without.",
    )
    enabled = StrictBooleanFilter(
        method="filter_enabled",
        help_text="true: with an enabled policy; false: none or a disabled one.",
    )
    search = TextFilter(
        "name", "icontains", help_text="Only namespaces whose name contains this text."
    )

    def filter_has_policy(
        self, queryset: QuerySet[Namespace], name: str, value: bool
    ) -> QuerySet[Namespace]:
        return queryset.filter(signing_policies__isnull=not value)

    def filter_enabled(
        self, queryset: QuerySet[Namespace], name: str, value: bool
    ) -> QuerySet[Namespace]:
        if value:
            return queryset.filter(signing_policies__disabled=False)
        return queryset.exclude(signing_policies__disabled=False)

"""What the KMS admin asks before disabling a key or revoking the registry-signing
authorization: the signing policies that stop signing, their namespaces and the images
waiting for them (``kms.dependants``; registered in ``SigningConfig.ready()``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import BooleanField, Count, ExpressionWrapper, Q, QuerySet, Value
from django.urls import reverse

from accounts.scoping import model_scope_condition
from kms.dependants import Dependant, Dependants
from kms.models import Key
from signing.constants import SERVICE
from signing.models import SignatureStatus, SigningPolicy


def _policies(user: Any) -> QuerySet[SigningPolicy]:
    """Every policy, each marked visible or not to ``user`` (one query), with its pending
    count: a key manager may not see every namespace, but should know something breaks."""
    condition = model_scope_condition(SigningPolicy, user)
    return (
        SigningPolicy.objects.select_related("namespace__instance")
        .only("name", "disabled", "key_id", "namespace__name", "namespace__instance__name")
        .annotate(
            pending=Count("signatures", filter=Q(signatures__status=SignatureStatus.PENDING)),
            visible=Value(True, output_field=BooleanField())
            if condition is None
            else ExpressionWrapper(condition, output_field=BooleanField()),
        )
        .order_by("namespace__instance__name", "namespace__name")
    )


def _dependants(policies: Sequence[SigningPolicy]) -> Dependants:
    visible = [
        Dependant(
            kind="signing policy",
            name=policy.name,
            where=f"namespace {policy.namespace.name} of instance {policy.namespace.instance.name}",
            pending=policy.pending,  # type: ignore[attr-defined]
            note="disabled: signs only on request" if policy.disabled else "",
            url=reverse("admin:signing_signingpolicy_change", args=[policy.pk]),
        )
        for policy in policies
        if policy.visible  # type: ignore[attr-defined]
    ]
    hidden = [policy for policy in policies if not policy.visible]  # type: ignore[attr-defined]
    return Dependants(
        visible=visible,
        hidden=len(hidden),
        hidden_pending=sum(policy.pending for policy in hidden),  # type: ignore[attr-defined]
    )


def policies_using_keys(keys: Sequence[Key], user: Any) -> dict[str, Dependants]:
    by_key: dict[str, list[SigningPolicy]] = {}
    for policy in _policies(user).filter(key__in=[key.pk for key in keys]):
        by_key.setdefault(str(policy.key_id), []).append(policy)
    return {key_id: _dependants(policies) for key_id, policies in by_key.items()}


def policies_needing_service(service: str, user: Any) -> Dependants:
    if service != SERVICE:
        return Dependants(visible=[])
    return _dependants(list(_policies(user)))

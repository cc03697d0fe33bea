"""The admin home's overview of the signing job (issue 12, point 6).

Per registry instance and namespace the user may see (``accounts.scoping``): the signing
policy (none, enabled, disabled), its key's state and the policy's health, and how many
images are signed, unsigned, waiting and failed; below it the most recent failures with
their reasons and the work under way. A fixed number of queries whatever the number of
namespaces: the rows, their policies, one grouped count of signatures, one of images,
the service grant, the recent failures.

Rendered by the ``signing_overview`` tag (``signing.templatetags.signing_dashboard``) in
``admin/signing/index.html``, the index template ``signing.admin`` gives the admin site.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, Min, OuterRef, Q, QuerySet, Subquery
from django.urls import reverse
from django.utils import timezone

from accounts.scoping import scope_model, visible_namespaces
from kms import services as kms_services
from registry.models import Manifest, Namespace, Tag
from signing.constants import SERVICE
from signing.models import Signature, SignatureStatus, SigningOperation, SigningPolicy
from signing.selectors import Health, Progress, operations_with_progress, policy_health, progress_of

# The home page shows this many namespaces; the namespace list has them all.
MAX_ROWS = 50
RECENT_FAILURES = 10


@dataclass
class OverviewRow:
    namespace: Namespace
    policy: SigningPolicy | None
    health: Health | None
    images: int = 0
    signed: int = 0
    pending: int = 0
    failed: int = 0

    @property
    def unsigned(self) -> int:
        """Images with no signature row yet (no policy, or pushed before it)."""
        return max(self.images - self.signed - self.pending - self.failed, 0)

    @property
    def policy_status(self) -> str:
        if self.policy is None:
            return "none"
        return "disabled" if self.policy.disabled else "enabled"

    @property
    def namespace_url(self) -> str:
        return reverse("admin:registry_namespace_change", args=[self.namespace.pk])

    @property
    def policy_url(self) -> str:
        if self.policy is None:
            return reverse("admin:signing_signingpolicy_add") + f"?namespace={self.namespace.pk}"
        return reverse("admin:signing_signingpolicy_change", args=[self.policy.pk])


@dataclass
class Overview:
    rows: list[OverviewRow]
    more_rows: int
    authorized: bool
    failures: list[Signature] = field(default_factory=list)
    pending: int = 0
    oldest_pending_at: datetime | None = None
    operations: list[tuple[SigningOperation, Progress]] = field(default_factory=list)

    @property
    def oldest_pending_seconds(self) -> float | None:
        if self.oldest_pending_at is None:
            return None
        return max((timezone.now() - self.oldest_pending_at).total_seconds(), 0.0)


def _namespaces(user: Any) -> QuerySet[Namespace]:
    return visible_namespaces(user).select_related("instance").order_by("instance__name", "name")


def _signature_counts(namespace_ids: list[int]) -> dict[int, dict[str, int]]:
    rows = (
        Signature.objects.filter(policy__namespace_id__in=namespace_ids)
        .values("policy__namespace_id")
        .annotate(
            signed=Count("id", filter=Q(status=SignatureStatus.SIGNED)),
            pending=Count("id", filter=Q(status=SignatureStatus.PENDING)),
            failed=Count("id", filter=Q(status=SignatureStatus.FAILED)),
        )
        .order_by()
    )
    return {
        row["policy__namespace_id"]: {
            "signed": row["signed"],
            "pending": row["pending"],
            "failed": row["failed"],
        }
        for row in rows
    }


def _image_counts(namespace_ids: list[int]) -> dict[int, int]:
    rows = (
        Manifest.objects.filter(repository__namespace_id__in=namespace_ids)
        .values("repository__namespace_id")
        .annotate(images=Count("id"))
        .order_by()
    )
    return {row["repository__namespace_id"]: row["images"] for row in rows}


def _policies(namespace_ids: list[int]) -> dict[int, SigningPolicy]:
    policies = (
        SigningPolicy.objects.filter(namespace_id__in=namespace_ids)
        .select_related("key")
        .defer("key__sealed_private_key")
    )
    return {policy.namespace_id: policy for policy in policies}


def _rows(namespaces: list[Namespace], authorized: bool) -> list[OverviewRow]:
    ids = [namespace.pk for namespace in namespaces]
    policies = _policies(ids)
    counts = _signature_counts(ids)
    images = _image_counts(ids)
    rows = []
    for namespace in namespaces:
        policy = policies.get(namespace.pk)
        rows.append(
            OverviewRow(
                namespace=namespace,
                policy=policy,
                health=None if policy is None else policy_health(policy, authorized=authorized),
                images=images.get(namespace.pk, 0),
                **counts.get(namespace.pk, {}),
            )
        )
    return rows


def recent_failures(user: Any, limit: int = RECENT_FAILURES) -> list[Signature]:
    """The latest failed signatures the user may see, each with one of its tags."""
    first_tag = Tag.objects.filter(manifest_id=OuterRef("manifest_id")).order_by("name")
    return list(
        Signature.objects.filter(
            status=SignatureStatus.FAILED,
            policy__namespace__in=visible_namespaces(user).values("pk"),
        )
        .select_related("manifest__repository", "policy__namespace__instance")
        .only(
            "failure_code",
            "failure_reason",
            "updated_at",
            "attempts",
            "manifest__digest",
            "manifest__repository__name",
            "policy__name",
            "policy__namespace__name",
            "policy__namespace__instance__name",
        )
        .annotate(tag_name=Subquery(first_tag.values("name")[:1]))
        .order_by("-updated_at", "-id")[:limit]
    )


def running_operations(
    user: Any, limit: int = RECENT_FAILURES
) -> list[tuple[SigningOperation, Progress]]:
    """The newest operations the user may see that still have work pending, with their
    counts (one query; an operation is marked finished only when next read or retried)."""
    unfinished = scope_model(operations_with_progress().filter(finished_at__isnull=True), user)
    running = [(operation, progress_of(operation)) for operation in unfinished[: limit * 4]]
    return [(operation, progress) for operation, progress in running if progress.pending][:limit]


def overview(user: Any) -> Overview:
    namespaces = list(_namespaces(user)[: MAX_ROWS + 1])
    shown = namespaces[:MAX_ROWS]
    authorized = kms_services.is_service_authorized(SERVICE)
    rows = _rows(shown, authorized)
    waiting = Signature.objects.filter(
        status=SignatureStatus.PENDING,
        policy__namespace__in=visible_namespaces(user).values("pk"),
    ).aggregate(count=Count("id"), oldest=Min("created_at"))
    return Overview(
        rows=rows,
        more_rows=_namespaces(user).count() - MAX_ROWS if len(namespaces) > MAX_ROWS else 0,
        authorized=authorized,
        failures=recent_failures(user),
        pending=waiting["count"],
        oldest_pending_at=waiting["oldest"],
        operations=running_operations(user),
    )

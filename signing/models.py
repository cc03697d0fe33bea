"""Signing policies (one per namespace), signature records, the operations people start
(bulk sign, re-sign, retry, delete) and pending artifact removals."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from registry.models import short_digest
from signing.naming import MAX_LENGTH, validate_policy_name

DIGEST_LENGTH = 71


class SigningPolicy(models.Model):
    """TCR's namespace-level image signing policy."""

    name = models.CharField(max_length=MAX_LENGTH, validators=[validate_policy_name])
    # One policy per namespace (constraint below). CASCADE: deleting a namespace deletes its
    # images first (registry delete handlers remove their signatures), then its policy.
    namespace = models.ForeignKey(
        "registry.Namespace", on_delete=models.CASCADE, related_name="signing_policies"
    )
    # PROTECT: a key that signs a namespace cannot disappear under it (the KMS refuses to
    # schedule its deletion, naming this policy).
    key = models.ForeignKey("kms.Key", on_delete=models.PROTECT, related_name="signing_policies")
    kms_region = models.CharField(max_length=32, editable=False)
    domain = models.CharField(max_length=261)
    disabled = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["namespace__instance__name", "namespace__name"]
        verbose_name_plural = "signing policies"
        permissions = [("sign_images", "Can sign, re-sign and retry image signatures")]
        constraints = [
            models.UniqueConstraint(fields=["namespace"], name="signing_one_policy_per_namespace"),
        ]

    def __str__(self) -> str:
        return self.name


class SignatureStatus(models.TextChoices):
    PENDING = "pending"
    SIGNED = "signed"
    FAILED = "failed"


class Trigger(models.TextChoices):
    PUSH = "push"
    MANUAL = "manual"
    BACKFILL = "backfill"
    RESIGN = "resign"


class Worker(models.Model):
    """A process that signs (a web process's thread pool, a Celery worker, a backfill), as
    the database knows it: alive while its heartbeat is younger than
    ``SIGNING_WORKER_LEASE_SECONDS``. Rows it claims name it, so a dead worker's rows are
    free to take at once instead of after a long lease."""

    kind = models.CharField(max_length=30)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.kind} worker {self.hostname}:{self.pid}"


class Signature(models.Model):
    """The signature of one manifest under one policy, and where it stands."""

    policy = models.ForeignKey(SigningPolicy, on_delete=models.CASCADE, related_name="signatures")
    # CASCADE: an image deleted from the registry takes its signature records with it; the
    # registry delete handler schedules the removal of its .sig artifact first.
    manifest = models.ForeignKey(
        "registry.Manifest", on_delete=models.CASCADE, related_name="signatures"
    )
    status = models.CharField(
        max_length=10, choices=SignatureStatus.choices, default=SignatureStatus.PENDING
    )
    failure_code = models.CharField(max_length=100, blank=True, default="")
    failure_reason = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # A worker owns the row until then; its heartbeat extends it while the work runs, so a
    # crashed worker's claim expires within a lease. Both claim columns are indexed only
    # where set: claims are few, the table is big.
    claimed_until = models.DateTimeField(null=True, blank=True)
    # Who claimed it (none for a caller that is not a registered worker, e.g. inline
    # signing in a one-off command). SET_NULL: a worker row goes only after it released
    # its claims or they expired; the claim itself is then judged by claimed_until alone.
    claimed_by = models.ForeignKey(
        Worker,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="claims",
        db_index=False,
    )
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # What the last successful signing used (kept even if the key is later destroyed).
    key_id = models.UUIDField(null=True, blank=True)
    key_fingerprint = models.CharField(max_length=64, blank=True, default="")
    algorithm = models.CharField(max_length=30, blank=True, default="")
    docker_reference = models.CharField(max_length=600, blank=True, default="")
    payload = models.BinaryField(null=True, blank=True)
    signature_value = models.TextField(blank=True, default="")  # base64, as in the artifact
    sig_manifest_digest = models.CharField(max_length=DIGEST_LENGTH, blank=True, default="")
    signed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["policy", "manifest"], name="signing_one_signature_per_policy_manifest"
            ),
            models.CheckConstraint(
                condition=Q(status__in=SignatureStatus.values), name="signing_signature_status"
            ),
            models.CheckConstraint(
                condition=Q(trigger__in=Trigger.values), name="signing_signature_trigger"
            ),
            models.CheckConstraint(
                condition=~Q(status=SignatureStatus.SIGNED)
                | (Q(signed_at__isnull=False) & ~Q(signature_value="") & Q(key_id__isnull=False)),
                name="signing_signed_rows_are_complete",
            ),
            models.CheckConstraint(
                condition=~Q(status=SignatureStatus.FAILED) | ~Q(failure_code=""),
                name="signing_failed_rows_have_a_code",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["policy", "status"]),
            models.Index(
                fields=["claimed_by"],
                condition=Q(claimed_by__isnull=False),
                name="signing_signature_claimed_by",
            ),
            models.Index(
                fields=["claimed_until"],
                condition=Q(claimed_until__isnull=False),
                name="signing_signature_claimed",
            ),
        ]

    def __str__(self) -> str:
        # The page title and breadcrumbs of the admin's signature page: the image, not ids.
        manifest = self.manifest
        return (
            f"Signature of {manifest.repository.name}@{short_digest(manifest.digest)} "
            f"({self.status})"
        )


class OperationKind(models.TextChoices):
    SIGN = "sign", "Sign selected"
    RESIGN = "resign", "Re-sign"
    RETRY = "retry", "Retry failed"
    SIGN_EXISTING = "sign_existing", "Sign existing images"
    DELETE_POLICY = "delete_policy", "Delete policy"


class SigningOperation(models.Model):
    """One request for work on many images (bulk sign, re-sign, retry failed, sign the
    existing images, delete a policy), answered at once and carried out by the workers.

    Its progress is read from the rows it covers (``SigningOperationItem``): a row counts
    as signed once signed since the operation started (or signed with its policy's key),
    as failed once a try after the start failed, else pending (``signing.selectors``).
    A policy deletion covers no rows (they go with the policy): its ``artifacts`` are the
    ``.sig`` removals it queued, done when their ``ArtifactCleanup`` rows are gone.
    """

    kind = models.CharField(max_length=20, choices=OperationKind.choices)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(db_index=True)
    # Set by the first read (or the periodic retry) that finds nothing pending any more.
    finished_at = models.DateTimeField(null=True, blank=True)
    # The scope. SET_NULL: the record outlives a deleted policy or namespace; the names
    # stay for the page, the instance for scoping (an instance takes its history along).
    policy = models.ForeignKey(
        SigningPolicy,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="operations",
    )
    instance = models.ForeignKey(
        "registry.Instance", on_delete=models.CASCADE, related_name="signing_operations"
    )
    namespace = models.ForeignKey(
        "registry.Namespace",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="signing_operations",
    )
    namespace_name = models.CharField(max_length=255, blank=True, default="")
    # What the request found: images asked for, already signed, without a policy.
    requested = models.PositiveIntegerField(default=0)
    already_signed = models.PositiveIntegerField(default=0)
    no_policy = models.PositiveIntegerField(default=0)
    # Policy deletion: how many .sig removals it queued.
    artifacts = models.PositiveIntegerField(default=0)
    signatures = models.ManyToManyField(
        Signature, through="SigningOperationItem", related_name="operations"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=OperationKind.values), name="signing_operation_kind"
            ),
            models.CheckConstraint(
                condition=Q(finished_at__isnull=True) | Q(finished_at__gte=F("created_at")),
                name="signing_operation_finishes_after_start",
            ),
            # One re-sign of a policy at a time: a second request is refused, not queued.
            models.UniqueConstraint(
                fields=["policy"],
                condition=Q(kind=OperationKind.RESIGN, finished_at__isnull=True),
                name="signing_one_running_resign_per_policy",
            ),
        ]
        indexes = [
            models.Index(
                fields=["policy", "kind"],
                condition=Q(finished_at__isnull=True),
                name="signing_operation_running",
            ),
        ]

    def __str__(self) -> str:
        scope = self.namespace_name or "several namespaces"
        return f"{self.get_kind_display()} #{self.pk} in {scope}"


class SigningOperationItem(models.Model):
    """A signature row an operation asked to sign. A row asked for again by a later
    operation belongs to both: each reads the row's state against its own start."""

    operation = models.ForeignKey(SigningOperation, on_delete=models.CASCADE, related_name="items")
    # CASCADE: a row deleted with its image leaves the operation (its total shrinks).
    signature = models.ForeignKey(
        Signature, on_delete=models.CASCADE, related_name="operation_items"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["operation", "signature"], name="signing_one_item_per_operation_row"
            ),
        ]

    def __str__(self) -> str:
        return f"operation {self.operation_id}: signature {self.signature_id}"


class CleanupReason(models.TextChoices):
    POLICY_DELETED = "policy-deleted"
    IMAGE_DELETED = "image-deleted"
    KEY_REPLACED = "key-replaced"
    # A signed image the registry does not hold (recheck_signatures --remove).
    NOT_IN_REGISTRY = "not-in-registry"


class ArtifactCleanup(models.Model):
    """Durable work: remove signature layers (or a whole .sig artifact) from a registry.

    Written in the same transaction as the change that calls for it and deleted once the
    registry has done it, so an unreachable registry delays the removal but never loses it.
    """

    instance = models.ForeignKey("registry.Instance", on_delete=models.CASCADE, related_name="+")
    repository = models.CharField(max_length=255)
    manifest_digest = models.CharField(max_length=DIGEST_LENGTH)
    # Remove only this key's layers; empty = remove the whole .sig artifact.
    key_fingerprint = models.CharField(max_length=64, blank=True, default="")
    reason = models.CharField(max_length=20, choices=CleanupReason.choices)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The policy deletion that queued it (its progress counts the removals left).
    operation = models.ForeignKey(
        SigningOperation,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="cleanups",
    )

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "repository", "manifest_digest", "key_fingerprint"],
                name="signing_one_cleanup_per_artifact_and_key",
            ),
        ]

    def __str__(self) -> str:
        return f"remove {self.repository}@{self.manifest_digest} signatures ({self.reason})"

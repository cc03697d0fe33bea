"""What Signet knows about its registries: instances, namespaces, repositories, tags, manifests.

Rows are written by ``registry.services`` only (webhook, sync, admin and API all call it).
The signing app builds on these models; it is never imported from here.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from registry.client import RegistryClient
from registry.network import configured_networks
from registry.reference import (
    DIGEST_LENGTH,
    DIGEST_PATTERN,
    INDEX_TYPES,
    NAMESPACE_PATTERN,
    REPOSITORY_MAX_LENGTH,
    REPOSITORY_PATTERN,
    TAG_PATTERN,
    digest_validator,
    namespace_validator,
    repository_validator,
    tag_validator,
)
from registry.secrets import key_id, read_secret

# --- naming rules of Signet's own records (the OCI grammar is in registry.reference) ------
# Anchored with \A and \Z, like registry.reference: the same patterns serve the validators
# and the database CHECK constraints.
INSTANCE_NAME_PATTERN = r"\A[a-z][a-z0-9-]{0,48}[a-z0-9]\Z"
DOMAIN_PATTERN = (
    r"\A(?=[^:]{1,253}(?::|\Z))"
    r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
    r"(?::[0-9]{1,5})?\Z"
)
ENV_NAME_PATTERN = r"\A[A-Za-z_][A-Za-z0-9_]{0,127}\Z"

instance_name_validator = RegexValidator(
    INSTANCE_NAME_PATTERN,
    "Instance names are 2-50 lowercase letters, digits or '-', starting with a letter and "
    "ending with a letter or digit.",
    code="invalid_instance_name",
)
domain_validator = RegexValidator(
    DOMAIN_PATTERN,
    "Enter a host name with an optional port, like registry.example.com:5000.",
    code="invalid_domain",
)
env_name_validator = RegexValidator(
    ENV_NAME_PATTERN,
    "Enter an environment variable name (letters, digits, '_').",
    code="invalid_env_name",
)


class AuthType(models.TextChoices):
    NONE = "none", "No authentication"
    # Username and password: HTTP basic, or the Docker token flow when the registry asks for it.
    BASIC = "basic", "Username and password"
    BEARER = "bearer", "Static bearer token"


class Instance(models.Model):
    """A registry instance as users know it in TCR (one Distribution deployment)."""

    name = models.CharField(max_length=50, unique=True, validators=[instance_name_validator])
    region = models.CharField(max_length=32)  # one of settings.KMS_REGIONS (checked by services)
    description = models.CharField(max_length=255, blank=True, default="")
    backend_url = models.URLField(
        max_length=255, help_text="Where Signet reaches the registry API (may be internal)."
    )
    auth_type = models.CharField(max_length=10, choices=AuthType.choices, default=AuthType.NONE)
    username = models.CharField(max_length=128, blank=True, default="")
    # The password or token, AES-256-GCM sealed under the KMS master keyring and bound to
    # ``registry-instance:<pk>@<origin of backend_url>``; or, instead, the name of an
    # environment variable holding it (``SIGNET_REGISTRY_SECRET_*`` only, registry.secrets).
    sealed_secret = models.BinaryField(null=True, blank=True, editable=False)
    secret_master_key_version = models.PositiveIntegerField(null=True, blank=True, editable=False)
    secret_env = models.CharField(
        max_length=128, blank=True, default="", validators=[env_name_validator]
    )
    default_domain = models.CharField(max_length=261, validators=[domain_validator])
    # sha256 hex of the webhook token; the token itself is shown once and never stored.
    webhook_token_hash = models.CharField(max_length=64, editable=False)
    webhook_token_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(auth_type__in=AuthType.values), name="registry_instance_auth_type_valid"
            ),
            models.CheckConstraint(
                condition=~(Q(sealed_secret__isnull=False) & ~Q(secret_env="")),
                name="registry_instance_one_secret_source",
            ),
            models.CheckConstraint(
                condition=Q(sealed_secret__isnull=True, secret_master_key_version__isnull=True)
                | Q(sealed_secret__isnull=False, secret_master_key_version__gte=1),
                name="registry_instance_sealed_secret_has_version",
            ),
            models.CheckConstraint(
                condition=Q(webhook_token_hash__regex=r"\A[0-9a-f]{64}\Z"),
                name="registry_instance_webhook_token_hash_sha256",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def secret_key_id(self) -> str:
        """What the sealed secret is bound to (AES-GCM associated data): this instance and
        the origin of its backend URL (``registry.secrets.key_id``)."""
        return key_id(pk=self.pk, backend_url=self.backend_url)

    @property
    def has_secret(self) -> bool:
        return self.sealed_secret is not None or bool(self.secret_env)

    def domain_names(self) -> list[str]:
        """The default domain first, then the custom ones (uses a prefetch when present)."""
        custom = (domain.name for domain in self.domains.all() if not domain.is_default)
        return [self.default_domain, *sorted(custom)]

    def secret(self) -> str:
        """The plaintext password/token. Never log it or put it in a message."""
        return read_secret(self)

    def registry_client(self, **options) -> RegistryClient:
        """A client for the registry API with this instance's (decrypted) credentials."""
        username = password = token = None
        if self.auth_type == AuthType.BASIC:
            username, password = self.username, self.secret()
        elif self.auth_type == AuthType.BEARER:
            token = self.secret()
        options.setdefault("deny_networks", configured_networks())
        options.setdefault("allowed_realm_origins", settings.REGISTRY_TOKEN_REALM_ALLOWED_ORIGINS)
        options.setdefault("trust_env", settings.REGISTRY_TRUST_ENV)
        return RegistryClient(
            self.backend_url,
            username=username,
            password=password,
            token=token,
            name=self.name,
            **options,
        )


class InstanceDomain(models.Model):
    """A domain name users pull an instance's images by: every one of them, the default
    (``is_default``, the same as ``Instance.default_domain``) and the custom ones.

    Verification finds the instance by the image's domain, so a name belongs to one
    instance only: the unique constraint covers default and custom names alike.
    """

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="domains")
    name = models.CharField(max_length=261, validators=[domain_validator])
    is_default = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["name"], name="registry_domain_name_unique"),
            models.UniqueConstraint(
                fields=["instance"],
                condition=Q(is_default=True),
                name="registry_instance_one_default_domain",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Namespace(models.Model):
    # PROTECT: deleting an instance must not silently wipe every namespace, repository, tag
    # and (in the signing app) signature recorded for it. Empty the instance first; the
    # service answers 409 (InstanceInUse) until then.
    instance = models.ForeignKey(Instance, on_delete=models.PROTECT, related_name="namespaces")
    name = models.CharField(max_length=30, validators=[namespace_validator])
    description = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["instance__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "name"], name="registry_namespace_unique_per_instance"
            ),
            models.CheckConstraint(
                condition=Q(name__regex=NAMESPACE_PATTERN),
                name="registry_namespace_name_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Repository(models.Model):
    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="repositories")
    # The full path, namespace included ("ns/team/app"): what the registry and users call it.
    name = models.CharField(max_length=REPOSITORY_MAX_LENGTH, validators=[repository_validator])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "repositories"
        constraints = [
            models.UniqueConstraint(
                fields=["namespace", "name"], name="registry_repository_unique_per_namespace"
            ),
            models.CheckConstraint(
                condition=Q(name__regex=REPOSITORY_PATTERN) & Q(name__contains="/"),
                name="registry_repository_name_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def short_name(self) -> str:
        """The path below the namespace ("team/app" for "ns/team/app")."""
        return self.name.split("/", 1)[1]


class Manifest(models.Model):
    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="manifests")
    digest = models.CharField(max_length=DIGEST_LENGTH, validators=[digest_validator])
    media_type = models.CharField(max_length=255)
    size = models.BigIntegerField(null=True, blank=True)
    pushed_at = models.DateTimeField()
    # Child manifests of an image index. A reference is kept by digest, so an index may be
    # recorded before its children; ``child`` is linked when (and while) the child is known.
    children = models.ManyToManyField(
        "self",
        through="ManifestReference",
        through_fields=("parent", "child"),
        symmetrical=False,
        related_name="parents",
        blank=True,
    )

    class Meta:
        ordering = ["-pushed_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["repository", "digest"], name="registry_manifest_unique_per_repository"
            ),
            models.CheckConstraint(
                condition=Q(digest__regex=DIGEST_PATTERN), name="registry_manifest_digest_valid"
            ),
            models.CheckConstraint(
                condition=Q(size__isnull=True) | Q(size__gte=0),
                name="registry_manifest_size_not_negative",
            ),
        ]
        indexes = [models.Index(fields=["digest"])]

    def __str__(self) -> str:
        return f"{self.repository.name}@{self.digest}"

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def short_digest(self) -> str:
        return short_digest(self.digest)


class ManifestReference(models.Model):
    """An image index's entry for one child manifest (same repository)."""

    parent = models.ForeignKey(Manifest, on_delete=models.CASCADE, related_name="child_references")
    child = models.ForeignKey(
        Manifest,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="parent_references",
    )
    child_digest = models.CharField(max_length=DIGEST_LENGTH, validators=[digest_validator])
    media_type = models.CharField(max_length=255, blank=True, default="")
    size = models.BigIntegerField(null=True, blank=True)
    platform = models.CharField(max_length=100, blank=True, default="")  # "linux/arm64/v8"

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["parent", "child_digest"], name="registry_manifest_reference_unique"
            ),
            models.CheckConstraint(
                condition=Q(child_digest__regex=DIGEST_PATTERN),
                name="registry_manifest_reference_digest_valid",
            ),
        ]
        indexes = [models.Index(fields=["child_digest"])]

    def __str__(self) -> str:
        return f"{self.parent.digest} -> {self.child_digest}"


class Tag(models.Model):
    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=128, validators=[tag_validator])
    # CASCADE: a tag is a name for a manifest; when the registry deletes the manifest it
    # deletes its tags too, and so do we.
    manifest = models.ForeignKey(Manifest, on_delete=models.CASCADE, related_name="tags")
    pushed_at = models.DateTimeField(help_text="When the tag was first pushed.")
    updated_at = models.DateTimeField(help_text="When the tag last moved to a new digest.")

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["repository", "name"], name="registry_tag_unique_per_repository"
            ),
            models.CheckConstraint(
                condition=Q(name__regex=TAG_PATTERN), name="registry_tag_name_valid"
            ),
            models.CheckConstraint(
                condition=Q(updated_at__gte=models.F("pushed_at")),
                name="registry_tag_updated_after_pushed",
            ),
        ]
        indexes = [models.Index(fields=["name"])]

    def __str__(self) -> str:
        return f"{self.repository.name}:{self.name}"

    @property
    def digest(self) -> str:
        return self.manifest.digest


class TagHistory(models.Model):
    """Every digest a tag has pointed at: ``from_digest`` is empty for the first push."""

    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="history")
    from_digest = models.CharField(max_length=DIGEST_LENGTH, blank=True, default="")
    to_digest = models.CharField(max_length=DIGEST_LENGTH, validators=[digest_validator])
    moved_at = models.DateTimeField()

    class Meta:
        ordering = ["-moved_at", "-id"]
        verbose_name_plural = "tag history"
        constraints = [
            models.CheckConstraint(
                condition=(Q(from_digest="") | Q(from_digest__regex=DIGEST_PATTERN))
                & Q(to_digest__regex=DIGEST_PATTERN)
                & ~Q(from_digest=models.F("to_digest")),
                name="registry_tag_history_digests_valid",
            ),
        ]
        indexes = [models.Index(fields=["tag", "moved_at"])]

    def __str__(self) -> str:
        return f"{self.from_digest or '(new)'} -> {self.to_digest}"


class EventStatus(models.TextChoices):
    PROCESSED = "processed"
    IGNORED = "ignored"


class RegistryEvent(models.Model):
    """A notification received from an instance; its id makes redeliveries harmless."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="events")
    event_id = models.CharField(max_length=100)
    action = models.CharField(max_length=20)
    repository = models.CharField(max_length=REPOSITORY_MAX_LENGTH)
    digest = models.CharField(max_length=DIGEST_LENGTH, blank=True, default="")
    tag = models.CharField(max_length=128, blank=True, default="")
    media_type = models.CharField(max_length=255, blank=True, default="")
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=10, choices=EventStatus.choices)
    reason = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "event_id"], name="registry_event_unique_per_instance"
            ),
            models.CheckConstraint(
                condition=Q(status__in=EventStatus.values), name="registry_event_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["instance", "received_at"])]

    def __str__(self) -> str:
        return f"{self.action} {self.repository} ({self.event_id})"


def short_digest(digest: str) -> str:
    """``sha256:1234abcd…``: enough to recognise a digest in a list."""
    if ":" not in digest:
        return digest
    algorithm, value = digest.split(":", 1)
    return f"{algorithm}:{value[:8]}…" if len(value) > 8 else digest

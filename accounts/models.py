"""Sub-accounts' access: one membership per (user, registry instance) with a role.

A membership grants its role's permissions (``accounts.roles``) on one instance, on
every namespace of it (``all_namespaces``) or only on its ``namespaces`` (none left
when they have all been deleted: never the whole instance). The grants
are read by ``accounts.backends.MembershipBackend`` (object permissions) and
``accounts.scoping`` (querysets). Superusers need none.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Role(models.TextChoices):
    READER = "reader", "Reader (read-only)"
    OPERATOR = "operator", "Operator"


class InstanceMembership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="instance_memberships"
    )
    instance = models.ForeignKey(
        "registry.Instance", on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.READER)
    # Explicit, so that a narrowed membership whose namespaces are all deleted grants no
    # namespace rather than falling back to the whole instance.
    all_namespaces = models.BooleanField(
        default=True,
        help_text="Every namespace of the instance, present and future. Untick it and "
        "choose namespaces to narrow the membership.",
    )
    namespaces = models.ManyToManyField(
        "registry.Namespace",
        blank=True,
        related_name="memberships",
        help_text="The namespaces of a narrowed membership (only when 'all namespaces' is "
        "unticked).",
    )
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    granted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user__username", "instance__name"]
        constraints = [
            models.UniqueConstraint(fields=["user", "instance"], name="accounts_one_membership"),
            models.CheckConstraint(
                condition=Q(role__in=Role.values), name="accounts_membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.role} on {self.instance}"

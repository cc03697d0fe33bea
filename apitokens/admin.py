"""API tokens in the admin: superusers see who holds tokens and revoke them.

No page shows a token or its digest: a row shows the token's prefix, its user, when it
was created and when it expires. Tokens are not created here (a token must be shown
once, on the page that made it, and admin messages travel in a cookie): users create
theirs with ``POST /api/v1/auth/token/``, administrators run ``manage.py
create_api_token`` for service accounts. Deleting a row revokes the token (audited).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from knox.models import AuthToken

from apitokens import services
from apitokens.models import ApiToken
from config.admin_site import SuperuserOnlyAdmin

# knox registers an admin of its own, listing digests; this one replaces it.
if admin.site.is_registered(AuthToken):
    admin.site.unregister(AuthToken)


class ExpiredFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "active"), ("expired", "expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> QuerySet[ApiToken]:
        live = Q(expiry__isnull=True) | Q(expiry__gt=timezone.now())
        if self.value() == "active":
            return queryset.filter(live)
        if self.value() == "expired":
            return queryset.exclude(live)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(SuperuserOnlyAdmin):
    list_display = ["prefix_shown", "user", "created", "expires", "state"]
    list_filter = [ExpiredFilter]
    search_fields = ["user__username"]
    ordering = ["-created"]
    fields = readonly_fields = ("prefix_shown", "user", "created", "expires", "state")

    # A token is shown once, at creation (API or create_api_token); never made or
    # changed here.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        return super().get_queryset(request).select_related("user")

    @admin.display(description="token", ordering="token_key")
    def prefix_shown(self, obj: ApiToken) -> str:
        return f"{obj.prefix}…"

    @admin.display(description="expires", ordering="expiry")
    def expires(self, obj: ApiToken) -> Any:
        return obj.expiry or "never"

    @admin.display(description="state")
    def state(self, obj: ApiToken) -> str:
        return "expired" if obj.expired else "active"

    def delete_model(self, request: HttpRequest, obj: ApiToken) -> None:
        services.revoke([obj], reason="revoked in the admin")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        services.revoke(queryset.values_list("pk", flat=True), reason="revoked in the admin")

"""The admin site: Django's, with one rule added to every model admin registered on it.

Django's ``history_view`` looks the object up before it checks the permission, so a
staff user without any access to a model gets 403 for an object that exists and the
"does not exist" redirect for one that does not: object ids could be probed. Every
model admin registered here (ours, ``auth``'s users and groups, DRF's tokens) checks the
model-level permission first, so both answer 403, and out-of-scope objects keep
answering exactly like missing ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

if TYPE_CHECKING:
    # The mixin always comes before a ModelAdmin (see SignetAdminSite.register).
    _ModelAdminBase = admin.ModelAdmin[Any]
else:
    _ModelAdminBase = object


class PermissionBeforeLookupMixin(_ModelAdminBase):
    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        return super().history_view(request, object_id, extra_context)


class SuperuserOnlyAdmin(admin.ModelAdmin):
    """Pages only active superusers see and use (access administration: memberships,
    API tokens), whatever model permissions a staff user holds."""

    def is_superuser(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.is_superuser(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.is_superuser(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.is_superuser(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.is_superuser(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.is_superuser(request)


# The admin home lists the apps in the order of an operator's work: what is signed, the
# registries, the keys, then access and the audit log (Django sorts them by name). App
# labels, not imports: config sits below every app.
APP_ORDER = ["signing", "registry", "kms", "accounts", "auth", "apitokens", "knox", "audit"]


def _app_rank(app: dict[str, Any]) -> tuple[int, str]:
    label = app["app_label"]
    rank = APP_ORDER.index(label) if label in APP_ORDER else len(APP_ORDER)
    return rank, str(app["name"]).lower()


class SignetAdminSite(admin.AdminSite):
    site_header = "Signet administration"
    site_title = "Signet"
    # "View site" leads to the API documentation: the admin is the only other site.
    site_url = "/api/v1/docs/"

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[Any]:
        return sorted(super().get_app_list(request, app_label), key=_app_rank)

    def register(self, model_or_iterable: Any, admin_class: Any = None, **options: Any) -> None:
        base = admin_class or admin.ModelAdmin
        if not issubclass(base, PermissionBeforeLookupMixin):
            base = type(
                base.__name__,
                (PermissionBeforeLookupMixin, base),
                {
                    "__module__": base.__module__,
                    "__qualname__": base.__qualname__,
                    "__doc__": base.__doc__,
                },
            )
        super().register(model_or_iterable, base, **options)

"""Django admin for KMS keys and service authorizations.

Thin callers of ``kms.services``: every write goes through a service and every
refusal (a ``DomainError``) is shown as a form error or a message, never a 500.
The sealed private key and its master-key version are never loaded into a
page: they are deferred in every queryset and absent from every field list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from config.errors import DomainError
from kms.dependants import Dependants, key_dependants, service_dependants
from kms.errors import KeyNotFound
from kms.forms import (
    KeyChangeForm,
    KeyCreateForm,
    ScheduleDeletionForm,
    ServiceAuthorizationGrantForm,
)
from kms.models import AuthorizedService, Key, KeyState, ServiceAuthorization
from kms.selectors import describe_key
from kms.services.authorization import revoke_service_authorization
from kms.services.states import cancel_key_deletion, disable_key, enable_key, schedule_key_deletion

MANAGE_KEY_STATE = "kms.manage_key_state"
# Posted by the buttons on a key's change page so the action returns there.
FROM_CHANGE_PAGE = "_from_change_page"
# Posted by the "Yes, I'm sure" button of a confirmation page.
CONFIRMED = "confirmed"


def confirmation_page(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    *,
    title: str,
    action: str,
    objects: list[Any],
    affected: list[tuple[str, Dependants]],
) -> TemplateResponse:
    """The page an action shows before it breaks something: for each object (a key, a
    service) the policies, namespaces and waiting images that stop signing
    (``kms.dependants``), and a button that posts the action again, confirmed."""
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.opts,
        "objects": objects,
        "affected": affected,
        "pending": sum(found.pending for _, found in affected),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "action_name": action,
        "confirmed_name": CONFIRMED,
        "from_change_page_name": FROM_CHANGE_PAGE,
        "from_change_page": bool(request.POST.get(FROM_CHANGE_PAGE)),
        "back_url": _back_url(model_admin, request, objects),
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/kms/confirm_action.html", context)


def _back_url(model_admin: admin.ModelAdmin, request: HttpRequest, objects: list[Any]) -> str:
    """Where "No, take me back" leads: the page the action was started from."""
    info = model_admin.opts.app_label, model_admin.opts.model_name
    if request.POST.get(FROM_CHANGE_PAGE) and len(objects) == 1:
        return reverse("admin:{}_{}_change".format(*info), args=[quote(objects[0].pk)])
    return reverse("admin:{}_{}_changelist".format(*info))


class RegionFilter(admin.SimpleListFilter):
    """Regions come from settings, so the filter costs no query."""

    title = "region"
    parameter_name = "region"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(region, region) for region in settings.KMS_REGIONS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Key]) -> QuerySet[Key]:
        if self.value():
            return queryset.filter(region=self.value())
        return queryset


@admin.register(Key)
class KeyAdmin(admin.ModelAdmin):
    list_display = [
        "alias",
        "key_id",
        "state",
        "key_usage",
        "region",
        "created_at",
        "deletion_date",
    ]
    list_filter = ["state", "key_usage", RegionFilter]
    search_fields = ["alias", "key_id"]
    search_help_text = "Search by alias or key ID."
    ordering = ["-created_at", "key_id"]
    actions = ["enable_keys", "disable_keys", "schedule_deletion", "cancel_deletion"]

    add_fieldsets = [(None, {"fields": ["alias", "description", "region", "key_usage"]})]
    change_fieldsets = [
        (None, {"fields": ["alias", "key_id", "description", "state", "deletion_date"]}),
        ("Key", {"fields": ["key_usage", "key_spec", "origin", "region"]}),
        ("Public key", {"fields": ["public_key", "public_key_fingerprint"]}),
        ("History", {"fields": ["created_by", "created_at", "updated_at"]}),
    ]

    # --- querysets, forms and pages -------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[Key]:
        return super().get_queryset(request).defer("sealed_private_key")

    def get_fieldsets(self, request: HttpRequest, obj: Key | None = None) -> list:
        return self.add_fieldsets if obj is None else self.change_fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Key | None = None) -> list[str]:
        if obj is None:
            return []
        return [
            name
            for _, options in self.change_fieldsets
            for name in options["fields"]
            if name != "description"
        ]

    def get_form(
        self, request: HttpRequest, obj: Key | None = None, change: bool = False, **kwargs: Any
    ) -> type:
        kwargs["form"] = KeyCreateForm if obj is None else KeyChangeForm
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"user": request.user})

    def save_model(self, request: HttpRequest, obj: Key, form: Any, change: bool) -> None:
        """Nothing to do: the form's service call (create/update) saved the key."""

    def has_delete_permission(self, request: HttpRequest, obj: Key | None = None) -> bool:
        return False  # keys are destroyed only by schedule deletion + purge_deleted_keys

    def has_manage_key_state_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(MANAGE_KEY_STATE)

    @admin.display(description="Public key (PEM)")
    def public_key(self, key: Key) -> str:
        url = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_public_key_pem",
            args=[quote(key.pk)],
        )
        return format_html(
            '<pre class="kms-public-key">{}</pre><p><a href="{}" download="{}.pem">'
            "Download {}.pem</a></p>",
            key.public_key_pem,
            url,
            key.alias,
            key.alias,
        )

    def get_urls(self) -> list:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/public-key.pem",
                self.admin_site.admin_view(self.public_key_pem_view),
                name="{}_{}_public_key_pem".format(*info),
            ),
            *super().get_urls(),
        ]

    def public_key_pem_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            key = describe_key(key_id=unquote(object_id))
        except KeyNotFound:
            raise Http404("No key with that key ID.") from None
        response = HttpResponse(key.public_key_pem, content_type="application/x-pem-file")
        # The alias is restricted to letters, digits, '-' and '_': safe in a header.
        response["Content-Disposition"] = f'attachment; filename="{key.alias}.pem"'
        return response

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        extra_context = dict(extra_context or {})
        extra_context["key_state_operations"] = self._state_operations(request, object_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def _state_operations(self, request: HttpRequest, object_id: str) -> list[dict[str, Any]]:
        """Buttons on the change page: the bulk actions, for this key's current state."""
        if not self.has_manage_key_state_permission(request):
            return []
        key = self.get_object(request, unquote(object_id))
        if key is None:
            return []
        by_state = {
            KeyState.ENABLED: [("disable_keys", "Disable", False)],
            KeyState.DISABLED: [
                ("enable_keys", "Enable", False),
                ("schedule_deletion", "Schedule deletion…", True),
            ],
            KeyState.PENDING_DELETE: [("cancel_deletion", "Cancel deletion", False)],
        }
        return [
            {"action": action, "label": label, "confirm": confirm}
            for action, label, confirm in by_state.get(KeyState(key.state), [])
        ]

    # --- actions ----------------------------------------------------------------

    def _apply_each(
        self,
        request: HttpRequest,
        queryset: QuerySet[Key],
        operation: Callable[[str], Key],
        *,
        done: str,
        unchanged_state: str | None = None,
    ) -> HttpResponseRedirect | None:
        """Run ``operation`` on each key; report each success or refusal by its alias."""
        keys = list(queryset.only("key_id", "alias", "state").order_by("alias"))
        for key in keys:
            if unchanged_state is not None and key.state == unchanged_state:
                self.message_user(request, f"{key.alias}: already {key.state}.", messages.INFO)
                continue
            try:
                updated = operation(str(key.key_id))
            except DomainError as exc:
                self.message_user(request, f"{key.alias}: {exc.message}", messages.ERROR)
                continue
            self.log_change(request, updated, done.capitalize())
            self.message_user(request, f"{key.alias}: {done}.", messages.SUCCESS)
        if request.POST.get(FROM_CHANGE_PAGE) and len(keys) == 1:
            return HttpResponseRedirect(
                reverse(
                    f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
                    args=[quote(keys[0].pk)],
                )
            )
        return None

    @admin.action(description="Enable selected keys", permissions=["manage_key_state"])
    def enable_keys(self, request: HttpRequest, queryset: QuerySet[Key]):
        return self._apply_each(
            request,
            queryset,
            lambda key_id: enable_key(key_id=key_id),
            done="enabled",
            unchanged_state=KeyState.ENABLED,
        )

    @admin.action(description="Disable selected keys", permissions=["manage_key_state"])
    def disable_keys(self, request: HttpRequest, queryset: QuerySet[Key]):
        """Keys a signing policy uses are disabled only after a page naming what breaks."""
        if CONFIRMED not in request.POST:
            keys = list(queryset.only("key_id", "alias", "state").order_by("alias"))
            used = key_dependants([k for k in keys if k.state == KeyState.ENABLED], request.user)
            if used:
                return confirmation_page(
                    self,
                    request,
                    title="Disable keys that sign images?",
                    action="disable_keys",
                    objects=keys,
                    affected=[
                        (f"Key {key.alias}", used[str(key.key_id)])
                        for key in keys
                        if str(key.key_id) in used
                    ],
                )
        return self._apply_each(
            request,
            queryset,
            lambda key_id: disable_key(key_id=key_id),
            done="disabled",
            unchanged_state=KeyState.DISABLED,
        )

    @admin.action(description="Cancel deletion of selected keys", permissions=["manage_key_state"])
    def cancel_deletion(self, request: HttpRequest, queryset: QuerySet[Key]):
        return self._apply_each(
            request,
            queryset,
            lambda key_id: cancel_key_deletion(key_id=key_id),
            done="deletion cancelled; the key is Disabled",
        )

    @admin.action(
        description="Schedule deletion of selected keys…", permissions=["manage_key_state"]
    )
    def schedule_deletion(self, request: HttpRequest, queryset: QuerySet[Key]):
        """Asks for the pending window on an intermediate page, then schedules each key."""
        if "apply" in request.POST:
            form = ScheduleDeletionForm(request.POST)
            if form.is_valid():
                days = form.cleaned_data["pending_window_in_days"]
                return self._apply_each(
                    request,
                    queryset,
                    lambda key_id: schedule_key_deletion(
                        key_id=key_id, pending_window_in_days=days
                    ),
                    done=f"deletion scheduled in {days} days",
                )
        else:
            form = ScheduleDeletionForm()
        keys = list(queryset.only("key_id", "alias", "state").order_by("alias"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Schedule key deletion",
            "opts": self.opts,
            "form": form,
            "keys": keys,
            # Only Disabled keys can be scheduled (kms.services.states): the others are
            # named, and with none left the button is off instead of inviting a refusal.
            "schedulable": [key for key in keys if key.state == KeyState.DISABLED],
            "enabled_keys": [key for key in keys if key.state == KeyState.ENABLED],
            "pending_keys": [key for key in keys if key.state == KeyState.PENDING_DELETE],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "action_name": "schedule_deletion",
            "from_change_page_name": FROM_CHANGE_PAGE,
            "from_change_page": bool(request.POST.get(FROM_CHANGE_PAGE)),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/kms/key/schedule_deletion.html", context)


class ActiveFilter(admin.SimpleListFilter):
    title = "active"
    parameter_name = "active"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Active"), ("no", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ServiceAuthorization)
class ServiceAuthorizationAdmin(admin.ModelAdmin):
    """Adding grants; the "Revoke" action revokes; records are read-only history."""

    form = ServiceAuthorizationGrantForm
    list_display = [
        "service",
        "active",
        "granted_by",
        "granted_at",
        "revoked_by",
        "revoked_at",
        "note",
    ]
    list_filter = ["service", ActiveFilter]
    list_select_related = ["granted_by", "revoked_by"]
    actions = ["revoke"]
    view_fields = [
        "service",
        "active",
        "note",
        "granted_by",
        "granted_at",
        "revoked_by",
        "revoked_at",
    ]

    @admin.display(boolean=True, description="active")
    def active(self, grant: ServiceAuthorization) -> bool:
        return grant.is_active

    def get_fields(self, request: HttpRequest, obj: ServiceAuthorization | None = None) -> list:
        return ["service", "note"] if obj is None else self.view_fields

    def get_readonly_fields(
        self, request: HttpRequest, obj: ServiceAuthorization | None = None
    ) -> list[str]:
        return [] if obj is None else self.view_fields

    def get_form(
        self,
        request: HttpRequest,
        obj: ServiceAuthorization | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> type:
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"user": request.user})

    def save_model(
        self, request: HttpRequest, obj: ServiceAuthorization, form: Any, change: bool
    ) -> None:
        """Nothing to do: the form's grant_service_authorization call saved the record."""

    def has_change_permission(
        self, request: HttpRequest, obj: ServiceAuthorization | None = None
    ) -> bool:
        return False  # history: revoke with the action instead

    def has_delete_permission(
        self, request: HttpRequest, obj: ServiceAuthorization | None = None
    ) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("kms.change_serviceauthorization")

    @admin.action(description="Revoke selected authorizations…", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ServiceAuthorization]):
        """Always through a page naming what stops signing: a revocation breaks every
        policy at once."""
        grants = list(queryset.order_by("service", "granted_at"))
        active = [grant for grant in grants if grant.is_active]
        if CONFIRMED not in request.POST and active:
            return confirmation_page(
                self,
                request,
                title="Revoke service authorizations?",
                action="revoke",
                objects=grants,
                affected=[
                    (
                        f"The {AuthorizedService(grant.service).label}",
                        service_dependants(grant.service, request.user),
                    )
                    for grant in active
                ],
            )
        self._revoke_each(request, grants)
        return None

    def _revoke_each(self, request: HttpRequest, grants: list[ServiceAuthorization]) -> None:
        for grant in grants:
            label = AuthorizedService(grant.service).label
            if not grant.is_active:
                self.message_user(
                    request, f"{label}: this grant was already revoked.", messages.INFO
                )
                continue
            try:
                revoked = revoke_service_authorization(
                    service=grant.service, revoked_by=request.user
                )
            except DomainError as exc:
                self.message_user(request, f"{label}: {exc.message}", messages.ERROR)
                continue
            if revoked is None:
                self.message_user(
                    request, f"{label}: this grant was already revoked.", messages.INFO
                )
                continue
            self.log_change(request, revoked, "Revoked")
            self.message_user(request, f"{label}: authorization revoked.", messages.SUCCESS)

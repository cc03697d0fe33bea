"""Operations (bulk sign, re-sign, retry, sign existing images, policy deletion): a list,
and each one's progress page, which polls a JSON view and updates its counts in place."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from accounts.scoping import scope_model
from config.ids import is_id
from registry import admin as registry_admin
from signing.models import SigningOperation
from signing.selectors import Progress, operations_with_progress, progress_of
from signing.services.operations import Started, settle

# Reading operations is reading signatures: the same permission, the same scope.
VIEW = "signing.view_signature"


def progress_url(operation: SigningOperation) -> str:
    return reverse("admin:signing_signingoperation_progress", args=[quote(operation.pk)])


def progress_redirect(operation: SigningOperation) -> HttpResponseRedirect:
    return HttpResponseRedirect(progress_url(operation))


def progress_data(operation: SigningOperation, progress: Progress) -> dict[str, Any]:
    return {
        "id": operation.pk,
        "kind": operation.kind,
        "state": progress.state,
        "total": progress.total,
        "pending": progress.pending,
        "signed": progress.signed,
        "failed": progress.failed,
        "removed": progress.removed,
        "created_at": operation.created_at.isoformat(),
        "finished_at": operation.finished_at.isoformat() if operation.finished_at else None,
    }


@admin.register(SigningOperation)
class SigningOperationAdmin(registry_admin.ScopedAdminMixin, admin.ModelAdmin):
    """Read-only: operations are started by the sign, re-sign, retry and delete buttons."""

    list_display = [
        "operation",
        "namespace_name",
        "state",
        "total",
        "pending",
        "signed",
        "failed",
        "created_by",
        "created_at",
    ]
    list_display_links = None
    list_filter = ["kind"]
    list_select_related = ["created_by"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[SigningOperation]:
        return scope_model(operations_with_progress(), request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(VIEW) if obj is None else request.user.has_perm(VIEW, obj)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(VIEW)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="operation")
    def operation(self, obj: SigningOperation) -> str:
        return format_html(
            '<a href="{}">{} #{}</a>', progress_url(obj), obj.get_kind_display(), obj.pk
        )

    @admin.display(description="state")
    def state(self, obj: SigningOperation) -> str:
        return progress_of(obj).state

    @admin.display(description="total")
    def total(self, obj: SigningOperation) -> int:
        return progress_of(obj).total

    @admin.display(description="pending")
    def pending(self, obj: SigningOperation) -> int:
        return progress_of(obj).pending

    @admin.display(description="signed")
    def signed(self, obj: SigningOperation) -> int:
        return progress_of(obj).signed

    @admin.display(description="failed")
    def failed(self, obj: SigningOperation) -> int:
        return progress_of(obj).failed

    def get_urls(self) -> list:
        return [
            path(
                "<path:object_id>/progress/",
                self.admin_site.admin_view(self.progress_view),
                name="signing_signingoperation_progress",
            ),
            path(
                "<path:object_id>/progress.json",
                self.admin_site.admin_view(self.progress_json_view),
                name="signing_signingoperation_progress_json",
            ),
            path(
                "<path:object_id>/change/",
                self.admin_site.admin_view(self.change_redirect_view),
            ),
            *super().get_urls(),
        ]

    def _operation(self, request: HttpRequest, object_id: str) -> tuple[SigningOperation, Progress]:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if not is_id(object_id):
            raise Http404("No such operation.")
        operation = self.get_queryset(request).filter(pk=int(object_id)).first()
        if operation is None:
            raise Http404("No such operation.")
        # Nothing pending any more: record when it finished (the page's "finished").
        settle(operation)
        return operation, progress_of(operation)

    def change_redirect_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """An operation's page is its progress (nothing in it can be changed)."""
        operation, _ = self._operation(request, object_id)
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET"])
        return progress_redirect(operation)

    def progress_json_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        operation, progress = self._operation(request, object_id)
        return JsonResponse(progress_data(operation, progress))

    def progress_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        operation, progress = self._operation(request, object_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "operation": operation,
            "progress": progress,
            "title": f"{operation.get_kind_display()} #{operation.pk}",
            "json_url": reverse(
                "admin:signing_signingoperation_progress_json", args=[quote(operation.pk)]
            ),
            "policy_url": (
                reverse("admin:signing_signingpolicy_change", args=[quote(operation.policy_id)])
                if operation.policy_id
                else ""
            ),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/signing/signingoperation/progress.html", context)


def operation_messages(started: Started) -> list[tuple[int, str]]:
    """What starting an operation did, as (level, text) messages."""
    found = []
    if started.queued:
        found.append(f"{started.queued} image(s) being signed in the background")
    if started.already_signed:
        found.append(f"{started.already_signed} already signed")
    if started.no_policy:
        found.append(f"{started.no_policy} in a namespace without a signing policy")
    text = "Images: " + (", ".join(found) or "nothing to sign") + "."
    return [(messages.SUCCESS if started.queued else messages.INFO, text)]

"""The policy page's operations: re-sign, retry failed, "Sign them now" (the existing
images) as buttons, views and actions. Each starts an operation (``signing.services.
operations``) and redirects to its progress page; a re-sign under way disables the
re-sign button with its counts. Mixed into ``SigningPolicyAdmin``."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from accounts.scoping import scope_model
from config.errors import DomainError
from signing.admin.common import SIGN_IMAGES, can_sign
from signing.admin.operation import operation_messages, progress_redirect, progress_url
from signing.models import OperationKind, SigningPolicy
from signing.selectors import progress_of, resign_candidates, running_operation, unsigned_images
from signing.services.operations import (
    Started,
    settle,
    start_resign,
    start_retry,
    start_sign_existing,
)


class PolicyOperationsMixin(admin.ModelAdmin):
    def has_sign_images_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None:
            return request.user.has_perm(SIGN_IMAGES, obj)
        return can_sign(request)

    def _operation_context(self, policy: SigningPolicy) -> dict[str, Any]:
        """The re-sign under way (its button disabled with its counts) and the images
        pushed before the policy existed ("Sign them now")."""
        context: dict[str, Any] = {"unsigned_count": unsigned_images(policy).count()}
        running = running_operation(policy, OperationKind.RESIGN)
        if running is not None and not settle(running):
            progress = progress_of(running)
            context["resign_running"] = {
                "done": progress.done,
                "total": progress.total,
                "url": progress_url(running),
            }
        return context

    # --- re-sign, retry, sign existing images: operations, followed on their page ----------

    def _start(self, request: HttpRequest, policy: SigningPolicy, start: Any) -> Started | None:
        """Start an operation; a refusal (already running, nothing to do) is a message."""
        try:
            started = start(policy=policy, actor=request.user)
        except DomainError as exc:
            level = messages.INFO if exc.code == "NothingToDo" else messages.ERROR
            text = exc.message[:1].lower() + exc.message[1:]  # after "Policy <name>: "
            self.message_user(request, f"Policy {policy.name}: {text}", level)
            return None
        return started

    def _resign(self, request: HttpRequest, policy: SigningPolicy) -> Started | None:
        started = self._start(request, policy, start_resign)
        if started is not None:
            self.log_change(
                request, policy, f"Re-sign of {started.queued} image(s) with the policy key."
            )
            self._report(
                request, f"Policy {policy.name}: re-sign with key {policy.key.alias}", started
            )
        return started

    def _retry_failed(self, request: HttpRequest, policy: SigningPolicy) -> Started | None:
        started = self._start(request, policy, start_retry)
        if started is not None:
            self._report(request, f"Policy {policy.name}: retry", started)
        return started

    def _report(self, request: HttpRequest, prefix: str, started: Started) -> None:
        for level, text in operation_messages(started):
            self.message_user(request, f"{prefix}: {text}", level)

    def _follow(self, request: HttpRequest, started: list[Started]) -> HttpResponse | None:
        """One operation: its progress page. Several: links to each, on the list."""
        if len(started) == 1:
            return progress_redirect(started[0].operation)
        for each in started:
            self.message_user(
                request,
                format_html(
                    'Follow <a href="{}">{}</a>.', progress_url(each.operation), each.operation
                ),
                messages.INFO,
            )
        return None

    @admin.action(
        description="Re-sign images signed with an older key, with the current key",
        permissions=["sign_images"],
    )
    def resign_selected(self, request: HttpRequest, queryset: QuerySet[SigningPolicy]):
        policies = scope_model(queryset, request.user, perm=SIGN_IMAGES)
        started = [s for s in (self._resign(request, p) for p in policies) if s is not None]
        return self._follow(request, started)

    @admin.action(description="Retry failed signatures", permissions=["sign_images"])
    def retry_failed_selected(self, request: HttpRequest, queryset: QuerySet[SigningPolicy]):
        policies = scope_model(queryset, request.user, perm=SIGN_IMAGES)
        started = [s for s in (self._retry_failed(request, p) for p in policies) if s is not None]
        return self._follow(request, started)

    def response_add(
        self, request: HttpRequest, obj: SigningPolicy, post_url_continue: str | None = None
    ) -> HttpResponse:
        """A new policy's page says what next: its namespace's images pushed before it
        are unsigned ("Sign them now")."""
        response = super().response_add(request, obj, post_url_continue)
        if (
            isinstance(response, HttpResponseRedirect)
            and "_addanother" not in request.POST
            and self.has_sign_images_permission(request, obj)
            and unsigned_images(obj).exists()
        ):
            return self._back_to(obj)
        return response

    def get_urls(self) -> list:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/resign/",
                self.admin_site.admin_view(self.resign_view),
                name="{}_{}_resign".format(*info),
            ),
            path(
                "<path:object_id>/retry-failed/",
                self.admin_site.admin_view(self.retry_failed_view),
                name="{}_{}_retry_failed".format(*info),
            ),
            path(
                "<path:object_id>/sign-existing/",
                self.admin_site.admin_view(self.sign_existing_view),
                name="{}_{}_sign_existing".format(*info),
            ),
            *super().get_urls(),
        ]

    def _policy_for_operation(self, request: HttpRequest, object_id: str) -> SigningPolicy:
        if not self.has_sign_images_permission(request):
            raise PermissionDenied
        policy = self.get_object(request, unquote(object_id))
        if policy is None:
            raise Http404("No such signing policy.")
        if not self.has_sign_images_permission(request, policy):
            raise PermissionDenied  # in the user's scope, but read-only there
        return policy

    def _back_to(self, policy: SigningPolicy) -> HttpResponseRedirect:
        return HttpResponseRedirect(
            reverse("admin:signing_signingpolicy_change", args=[quote(policy.pk)])
        )

    def resign_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: a confirmation page (the link in the key-change message); POST: re-sign."""
        policy = self._policy_for_operation(request, object_id)
        if request.method == "POST":
            started = self._resign(request, policy)
            return progress_redirect(started.operation) if started else self._back_to(policy)
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "POST"])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": policy,
            "title": f"Re-sign the images of namespace {policy.namespace.name}",
            "resign_count": resign_candidates(policy).count(),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/signing/signingpolicy/resign.html", context)

    def retry_failed_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        policy = self._policy_for_operation(request, object_id)
        started = self._retry_failed(request, policy)
        return progress_redirect(started.operation) if started else self._back_to(policy)

    def sign_existing_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The "Sign them now" button: sign the images pushed before the policy."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        policy = self._policy_for_operation(request, object_id)
        started = self._start(request, policy, start_sign_existing)
        if started is None:
            return self._back_to(policy)
        self.log_change(request, policy, f"Signing {started.queued} existing image(s).")
        self._report(request, f"Policy {policy.name}: sign existing images", started)
        return progress_redirect(started.operation)

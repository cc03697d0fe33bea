"""What the signing admin pages share: the sign permission, styles, result messages."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest
from django.utils.html import format_html

from signing.selectors import Health
from signing.services.requests import SignRequestResult
from signing.services.worker import SignOutcome

SIGN_IMAGES = "signing.sign_images"
ERROR_STYLE = "color:var(--error-fg,#ba2121);font-weight:bold"
MUTED_STYLE = "color:var(--body-quiet-color,#666)"


def can_sign(request: HttpRequest) -> bool:
    return request.user.has_perm(SIGN_IMAGES)


def health_html(health: Health) -> str:
    if health.ok:
        return format_html("ok: {}", health.message)
    return format_html('<span style="{}">error: {}</span>', ERROR_STYLE, health.message)


def sign_result_messages(result: SignRequestResult) -> list[tuple[int, str]]:
    """What a sign/re-sign request did, as (level, text) messages."""
    outcome = result.outcome
    done = []
    if outcome.signed:
        done.append(f"{outcome.signed} signed")
    if result.already_signed:
        done.append(f"{result.already_signed} already signed")
    if result.queued:
        done.append(f"{result.queued} queued for signing in the background")
    if outcome.skipped:
        done.append(f"{outcome.skipped} being signed by another worker")
    if result.no_policy:
        done.append(f"{result.no_policy} in a namespace without a signing policy")
    found: list[tuple[int, str]] = []
    if done or not outcome.failed:
        level = messages.SUCCESS if outcome.signed else messages.INFO
        found.append((level, "Images: " + (", ".join(done) or "nothing to sign") + "."))
    if outcome.failed:
        found.append((messages.ERROR, f"{outcome.failed} failed: " + "; ".join(outcome.failures)))
    return found


def outcome_messages(outcome: SignOutcome) -> list[tuple[int, str]]:
    return sign_result_messages(SignRequestResult(outcome=outcome))

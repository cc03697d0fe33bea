"""Signing operations (writes). The registry push hook, admin, API and commands call these.

By concern: ``policies``, ``hooks`` (registry push/delete), ``worker`` (claim, sign,
publish, record failure), ``cleanups`` (artifact removal), ``requests`` (on-demand sign,
re-sign, retry). Reads live in ``signing.selectors``. The names below are re-exported for
callers outside the signing app; inside it, import from the concrete module.
"""

from __future__ import annotations

from signing.constants import CLAIM_SECONDS, SERVICE, SIGNING_ALGORITHM, UNVERIFIED_CODES
from signing.selectors import (
    Health,
    given_up,
    manifests_with_children,
    needs_signing,
    policy_health,
    resign_candidates,
    signatures_removed_by_deleting,
    suitable_keys,
    tags_in_scope,
)
from signing.services.cleanups import run_cleanups
from signing.services.hooks import on_manifests_deleted, on_manifests_pushed
from signing.services.policies import (
    PolicyOutcome,
    check_policy_key,
    check_policy_name,
    create_policy,
    delete_policy,
    refuse_deleting_policy_keys,
    update_policy,
    validate_policy,
)
from signing.services.requests import (
    SignRequestResult,
    request_signing,
    resign_policy,
    retry_now,
    retry_signatures,
)
from signing.services.worker import SignOutcome, sign_signature, sign_signatures

__all__ = [
    "CLAIM_SECONDS",
    "SERVICE",
    "SIGNING_ALGORITHM",
    "UNVERIFIED_CODES",
    "Health",
    "PolicyOutcome",
    "SignOutcome",
    "SignRequestResult",
    "check_policy_key",
    "check_policy_name",
    "create_policy",
    "delete_policy",
    "given_up",
    "manifests_with_children",
    "needs_signing",
    "on_manifests_deleted",
    "on_manifests_pushed",
    "policy_health",
    "refuse_deleting_policy_keys",
    "request_signing",
    "resign_candidates",
    "resign_policy",
    "retry_now",
    "retry_signatures",
    "run_cleanups",
    "sign_signature",
    "sign_signatures",
    "signatures_removed_by_deleting",
    "suitable_keys",
    "tags_in_scope",
    "update_policy",
    "validate_policy",
]

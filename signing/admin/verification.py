"""The "Verify signatures" fields of a policy's page: its public key, policy.json,
registries.d entry and cosign command."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils.html import format_html

from signing import snippets
from signing.models import SigningPolicy


def key_file_name(policy: SigningPolicy) -> str:
    return snippets.public_key_file_name(policy)


def policy_json_snippet(policy: SigningPolicy) -> str:
    return snippets.verification_snippets(policy)["policy_json"]


def registries_d_snippet(policy: SigningPolicy) -> str:
    return snippets.verification_snippets(policy)["registries_d"]


def cosign_command(policy: SigningPolicy) -> str:
    return snippets.verification_snippets(policy)["cosign_command"]


class VerificationSnippetsMixin:
    """Read-only fields for ``SigningPolicyAdmin``'s "Verify signatures" section."""

    @admin.display(description="public key (PEM)")
    def public_key(self, obj: SigningPolicy) -> str:
        url = reverse("admin:kms_key_public_key_pem", args=[quote(obj.key.pk)])
        return format_html(
            '<pre class="signing-public-key">{}</pre><p><a href="{}" download="{}">'
            "Download {}</a> (key {}, fingerprint {}…)</p>",
            obj.key.public_key_pem,
            url,
            key_file_name(obj),
            key_file_name(obj),
            obj.key.alias,
            obj.key.public_key_fingerprint[:16],
        )

    @admin.display(description="policy.json")
    def policy_json(self, obj: SigningPolicy) -> str:
        return format_html(
            "<pre>{}</pre><p>Save the public key as /etc/containers/keys/{}; merge this into "
            "/etc/containers/policy.json (its default rejects every other image). Users "
            "must pull by {}/{}/… for the identity check to pass.</p>",
            policy_json_snippet(obj),
            key_file_name(obj),
            obj.domain,
            obj.namespace.name,
        )

    @admin.display(description="registries.d")
    def registries_d(self, obj: SigningPolicy) -> str:
        return format_html(
            "<pre>{}</pre><p>Save it as {} (any file name ending in .yaml works: the key "
            "under docker:, {}, is what matches the images): look for signatures stored "
            "beside the images (cosign's .sig tags).</p>",
            registries_d_snippet(obj),
            snippets.registries_d_file_name(obj),
            obj.domain,
        )

    @admin.display(description="cosign")
    def cosign_verify(self, obj: SigningPolicy) -> str:
        return format_html(
            "<pre>{}</pre><p>cosign checks the key and the digest, not the identity; "
            "the signatures are not in a transparency log, hence --insecure-ignore-tlog.</p>",
            cosign_command(obj),
        )

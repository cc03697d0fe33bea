"""The admin lists and pages built around the signing job (issue 12, points 1, 8 and 10):
what a row is, its signature and the Sign button first; the rest compact or on the
detail page; the help texts, titles, filters, dates and key names as a user reads them.

Pages only: nothing here reaches a registry (tags are recorded in the database).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role
from kms import services as kms_services
from kms.models import AuthorizedService
from registry import services as registry_services
from registry.models import Instance, Namespace, Tag
from signing import services
from signing.models import Signature, SignatureStatus, SigningPolicy
from tests.accounts.support import grant
from tests.factories import make_key, make_user
from tests.signing.test_admin import add_signature, messages_of, record_tag

pytestmark = pytest.mark.django_db

TAGS = reverse("admin:registry_tag_changelist")
POLICIES = reverse("admin:signing_signingpolicy_changelist")
POLICY_ADD = reverse("admin:signing_signingpolicy_add")
SIGNATURES = reverse("admin:signing_signature_changelist")
NAMESPACES = reverse("admin:registry_namespace_changelist")
CSS = "/static/registry/admin.css"


@pytest.fixture
def authorized(superuser):
    return kms_services.grant_service_authorization(
        service=AuthorizedService.REGISTRY_SIGNING, granted_by=superuser
    )


@pytest.fixture
def key(authorized):
    return make_key("image-signing")


@pytest.fixture
def instance(db) -> Instance:
    created, _token = registry_services.create_instance(
        name="local", backend_url="http://127.0.0.1:9", default_domain="127.0.0.1:5000"
    )
    return created


@pytest.fixture
def namespace(instance) -> Namespace:
    return registry_services.create_namespace(instance=instance, name="team-a")


@pytest.fixture
def policy(namespace, key) -> SigningPolicy:
    return services.create_policy(namespace=namespace, name="team-a-policy", key=key).policy


def columns(page: str) -> list[str]:
    """The column classes of the list's first row, in order."""
    body = page[page.index("<tbody>") :]
    row = body[: body.index("</tr>")]
    return re.findall(r'<t[hd] class="(field-[\w-]+|action-checkbox)', row)


def cell(page: str, name: str, row: str = "") -> str:
    """The cell of column ``name`` (its HTML) in the first row, or the row holding ``row``."""
    body = page[page.index("<tbody>") :]
    if row:
        rows = re.findall(r"<tr>.*?</tr>", body, re.S)
        body = next(html for html in rows if row in html)
    match = re.search(rf'<(t[hd]) class="field-{name}[^"]*"[^>]*>(.*?)</\1>', body, re.S)
    assert match, name
    return match.group(2)


def tag_page(tag: Tag) -> str:
    return reverse("admin:registry_tag_change", args=[tag.pk])


# --- point 1: the tag list and the tag page ------------------------------------------------


def test_the_tag_list_shows_repository_tag_then_signature_then_sign_first(
    admin_client, policy, namespace
):
    tag = record_tag(namespace, "team-a/app", "v1")

    response = admin_client.get(TAGS)

    page = response.content.decode()
    assert columns(page)[:4] == [
        "action-checkbox",
        "field-reference",
        "field-signature",
        "field-operation",
    ]
    # The rest comes after, compact: no "updated at", the media type as a short name.
    assert columns(page)[4:] == ["field-digest_short", "field-media_type", "field-pushed_at"]
    assert f'<a href="{tag_page(tag)}">team-a/app:v1</a>' in cell(page, "reference")
    assert '<span class="signature-status signature-unsigned" title="">unsigned</span>' in cell(
        page, "signature"
    )
    assert 'class="button sign-button"' in cell(page, "operation")
    assert ">Sign</button>" in cell(page, "operation")
    assert '<span title="application/vnd.oci.image.manifest.v1+json">OCI manifest</span>' in cell(
        page, "media_type"
    )
    assert CSS in page


def test_a_failed_row_shows_its_reason_on_hover_and_expandable(admin_client, policy, namespace):
    tag = record_tag(namespace, "team-a/app", "v1")
    add_signature(policy, tag, SignatureStatus.FAILED)

    page = admin_client.get(TAGS).content.decode()

    signature = cell(page, "signature")
    reason = "KmsUnavailable: The KMS did not answer."
    assert (
        f'<span class="signature-status signature-failed" title="{reason}">failed</span>'
        in signature
    )
    assert (
        f'<details class="signature-reason"><summary>why</summary>{reason}</details>' in signature
    )


def test_each_status_has_its_class_and_a_signed_row_offers_re_sign(
    admin_client, policy, namespace, instance
):
    statuses = {
        "signed": SignatureStatus.SIGNED,
        "pending": SignatureStatus.PENDING,
        "failed": SignatureStatus.FAILED,
        "unsigned": None,
    }
    for name, status in statuses.items():
        tag = record_tag(namespace, "team-a/app", name)
        if status:
            add_signature(policy, tag, status)
    bare = registry_services.create_namespace(instance=instance, name="bare")
    record_tag(bare, "bare/app", "v1")

    page = admin_client.get(TAGS).content.decode()
    for name, css in [*((f"team-a/app:{n}", n) for n in statuses), ("bare/app:v1", "no-policy")]:
        row = f">{name}</a>"
        assert f'class="signature-status signature-{css}"' in cell(page, "signature", row), name
        button = "Re-sign" if css == "signed" else "Sign"
        assert f">{button}</button>" in cell(page, "operation", row), name


def test_the_tag_page_shows_the_pull_reference_the_signature_and_the_sign_button(
    admin_client, policy, namespace
):
    tag = record_tag(namespace, "team-a/app", "v1")
    add_signature(policy, tag, SignatureStatus.SIGNED)

    page = admin_client.get(tag_page(tag)).content.decode()

    assert '<code id="pull-reference">127.0.0.1:5000/team-a/app:v1</code>' in page
    assert (
        f'<code id="pull-reference-digest">127.0.0.1:5000/team-a/app@{tag.manifest.digest}</code>'
        in page
    )
    assert '<span id="signature-status" class="signature-status signature-signed"' in page
    sign = reverse("admin:registry_tag_sign", args=[tag.pk])
    assert re.search(rf'<button type="submit" class="button sign-button" formaction="{sign}"', page)
    assert '<form enctype="multipart/form-data"' in page or 'id="tag_form"' in page


def test_the_tag_page_uses_the_policys_domain_in_the_pull_reference(admin_client, namespace, key):
    services.create_policy(namespace=namespace, name="team-a-policy", key=key)
    registry_services.update_instance(
        instance=namespace.instance, custom_domains=["images.example.com"]
    )
    SigningPolicy.objects.update(domain="images.example.com")
    tag = record_tag(namespace, "team-a/app", "v1")

    page = admin_client.get(tag_page(tag)).content.decode()

    assert '<code id="pull-reference">images.example.com/team-a/app:v1</code>' in page


def test_the_policy_list_keeps_name_status_health_and_counts_first(admin_client, policy):
    response = admin_client.get(POLICIES)

    page = response.content.decode()
    assert columns(page) == [
        "action-checkbox",
        "field-name",
        "field-enabled",
        "field-health",
        "field-signature_counts",
        "field-namespace_label",
        "field-key_alias",
    ]
    assert "ok: Signing new pushes." in cell(page, "health")
    assert ">0</a> signed, " in cell(page, "signature_counts")
    assert cell(page, "namespace_label") == "local / team-a"
    assert CSS in page
    # Region, domain and history are on the policy's page.
    change = admin_client.get(reverse("admin:signing_signingpolicy_change", args=[policy.pk]))
    for label in ("KMS region", "Domain name", "Created by"):
        assert label in change.content.decode(), label


def test_the_namespace_list_shows_the_policy_right_after_the_name(admin_client, policy, namespace):
    page = admin_client.get(NAMESPACES).content.decode()

    assert columns(page)[:4] == [
        "action-checkbox",
        "field-name",
        "field-signing_policy",
        "field-repository_count",
    ]
    assert ">enabled</a>" in cell(page, "signing_policy")
    assert CSS in page


def test_the_stylesheet_keeps_the_key_picker_inside_the_form_and_health_wrapping(
    admin_client, key, namespace
):
    page = admin_client.get(POLICY_ADD).content.decode()
    assert CSS in page
    text = Path(finders.find("registry/admin.css")).read_text()
    assert re.search(r"select#id_key[^{]*\{[^}]*width", text)
    assert re.search(r"form \.aligned select,[^{]*\{[^}]*max-width: 100%", text)
    assert re.search(r"\.field-health,[^{]*\{[^}]*white-space: normal", text)


# --- point 8: help texts, titles, filters, dates, key names --------------------------------


def test_the_domain_help_shows_its_placeholders(admin_client, key, namespace):
    page = admin_client.get(POLICY_ADD).content.decode()

    assert "identity (&lt;domain&gt;/&lt;namespace&gt;/&lt;repository&gt;)" in page
    assert "<domain>" not in page


def test_the_registries_d_snippet_and_its_sentence_name_the_same_file(admin_client, policy):
    page = admin_client.get(
        reverse("admin:signing_signingpolicy_change", args=[policy.pk])
    ).content.decode()

    names = set(re.findall(r"/etc/containers/registries\.d/([^\s<]+\.yaml)", page))
    assert names == {"127.0.0.1_5000.yaml"}
    assert "&quot;127.0.0.1:5000&quot;:" in page  # the key containers matches: host:port


def test_the_region_advice_is_not_shown_when_the_regions_match(admin_client, policy):
    for url in (POLICY_ADD, reverse("admin:signing_signingpolicy_change", args=[policy.pk])):
        page = admin_client.get(url).content.decode()
        assert "same region" not in page, url


def test_the_policy_status_filter_is_titled_status(admin_client, policy, namespace, key):
    other = registry_services.create_namespace(instance=namespace.instance, name="team-b")
    disabled = services.create_policy(
        namespace=other, name="team-b-policy", key=key, disabled=True
    ).policy

    page = admin_client.get(POLICIES).content.decode()

    assert "By disabled" not in page
    assert "By status" in page
    rows = admin_client.get(POLICIES, {"status": "disabled"}).context["cl"].result_list
    assert [row.pk for row in rows] == [disabled.pk]
    rows = admin_client.get(POLICIES, {"status": "enabled"}).context["cl"].result_list
    assert [row.pk for row in rows] == [policy.pk]


def test_the_signature_page_is_titled_by_its_image(admin_client, policy, namespace):
    tag = record_tag(namespace, "team-a/app", "v1")
    signature = add_signature(policy, tag, SignatureStatus.SIGNED)

    page = admin_client.get(
        reverse("admin:signing_signature_change", args=[signature.pk])
    ).content.decode()

    title = f"Signature of team-a/app@{tag.manifest.digest[:15]}… (signed)"
    assert f"<h2>{title}</h2>" in page
    assert " under " not in page


def test_a_re_signed_row_names_the_alias_of_the_key_that_signed_it(
    admin_client, policy, namespace, key
):
    tag = record_tag(namespace, "team-a/app", "v1")
    add_signature(policy, tag, SignatureStatus.SIGNED)
    rotated = make_key("image-signing-2")
    services.update_policy(policy=policy, key=str(rotated.pk))

    for url in (TAGS, SIGNATURES):
        page = admin_client.get(url).content.decode()
        assert (
            f'<span class="signature-key" title="Key fingerprint {key.public_key_fingerprint}">'
            "image-signing</span>"
            ' <span class="signature-older-key">(older key)</span>' in page
        ), url
        assert "older key " + key.public_key_fingerprint[:12] not in page


def test_a_destroyed_keys_signature_shows_its_fingerprint(admin_client, policy, namespace):
    tag = record_tag(namespace, "team-a/app", "v1")
    signature = add_signature(policy, tag, SignatureStatus.SIGNED)
    Signature.objects.filter(pk=signature.pk).update(
        key_id="00000000-0000-4000-8000-000000000000", key_fingerprint="ab" * 32
    )

    page = admin_client.get(SIGNATURES).content.decode()

    assert "deleted key abababababab…" in page


DATE = re.compile(
    r"\b(\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?: UTC)?|[A-Z][a-z]{2}\.? \d{1,2}, \d{4}|"
    r"\d{1,2}:\d{2} [ap]\.m\.|noon|midnight)"
)


def test_every_date_on_the_signing_pages_has_one_format(admin_client, policy, namespace):
    tag = record_tag(namespace, "team-a/app", "v1")
    signature = add_signature(policy, tag, SignatureStatus.SIGNED)
    pages = [
        TAGS,
        tag_page(tag),
        SIGNATURES,
        reverse("admin:signing_signature_change", args=[signature.pk]),
        reverse("admin:signing_signingpolicy_change", args=[policy.pk]),
        NAMESPACES,
        reverse("admin:registry_namespace_change", args=[namespace.pk]),
    ]
    today = f"{timezone.now():%Y-%m-%d}"
    for url in pages:
        page = admin_client.get(url).content.decode()
        dates = DATE.findall(page)
        assert any(date.startswith(today) for date in dates), (url, dates)
        assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}( UTC)?", d) for d in dates), (
            url,
            dates,
        )


# --- point 10: the Sign URL opened directly, messages keep an alias's case -----------------


def test_the_sign_url_opened_by_a_reader_goes_to_the_tag_page_with_a_message(
    client, policy, namespace
):
    tag = record_tag(namespace, "team-a/app", "v1")
    reader = make_user("reader", is_staff=True)
    grant(reader, namespace.instance, Role.READER)
    client.force_login(reader)

    response = client.get(reverse("admin:registry_tag_sign", args=[tag.pk]), follow=True)

    assert response.redirect_chain == [(tag_page(tag), 302)]
    assert messages_of(response) == [
        "Tag team-a/app:v1: nothing signed: signing here needs the operator role."
    ]
    assert not Signature.objects.exists()


def test_a_message_starting_with_an_alias_keeps_its_case(admin_client, key):
    keys = reverse("admin:kms_key_changelist")

    response = admin_client.post(
        keys,
        {"action": "enable_keys", "_selected_action": [str(key.pk)], "index": 0},
        follow=True,
    )

    page = response.content.decode()
    assert "image-signing: already Enabled." in page or "Key image-signing" in page
    assert "Image-signing" not in page

"""The signing flow of a new user, in headless Chromium on the live server with a real
registry: a key, the service authorization, a policy (a bad name first), a push that gets
signed, an existing image signed from its row, a key change with re-sign, and deleting the
policy. Every step is a screenshot (see tests/browser/conftest.py for the folder)."""

from __future__ import annotations

import pytest

from kms.models import Key, ServiceAuthorization
from signing.dispatch import wait_for_background_work
from signing.models import Signature, SignatureStatus, SigningPolicy
from tests.browser import pages
from tests.browser.conftest import LiveRegistry
from tests.browser.support import Browser
from tests.factories import make_key
from tests.support import live_signet

pytestmark = [pytest.mark.registry_server, pytest.mark.django_db(transaction=True)]


def save(page: Browser) -> None:
    page.submit_and_wait("input[name=_save]")


def wait_signed_with(key: Key, count: int) -> None:
    def done() -> bool:
        rows = Signature.objects.filter(status=SignatureStatus.SIGNED, key_id=key.key_id)
        return rows.count() == count

    live_signet.wait_for(done, f"{count} signatures by {key.alias}", seconds=20)


def test_a_new_user_creates_key_authorization_and_policy_and_pushes_are_signed(
    browser: Browser, live_registry: LiveRegistry
):
    # An image pushed before there is a policy: recorded, not signed.
    old = live_registry.push("team/old", "v1", seed="before-policy")
    live_registry.wait_recorded("team/old", "v1", old)

    browser.open("/admin/kms/key/add/")
    browser.fill("#id_alias", "team-signing")
    browser.fill("#id_description", "Signs team images")
    browser.shot("key-form")
    save(browser)
    browser.wait_for_text("team-signing", "ul.messagelist")
    browser.shot("key-created")
    key = Key.objects.get(alias="team-signing")
    assert key.state == "Enabled"

    browser.open("/admin/kms/serviceauthorization/add/")
    browser.select("#id_service", text="egistry")
    browser.fill("#id_note", "signing for team")
    browser.shot("authorization-form")
    save(browser)
    browser.wait_for("ul.messagelist li.success")
    browser.shot("authorization-granted")
    assert ServiceAuthorization.objects.filter(revoked_at__isnull=True).count() == 1

    browser.open("/admin/signing/signingpolicy/add/")
    browser.select("#id_namespace", text="team")
    browser.fill("#id_name", "Team Policy")
    browser.select("#id_key", text="team-signing")
    save(browser)
    error = browser.wait_for(".field-name .errorlist, .errors.field-name")
    assert "lowercase" in error.text.lower() or "character" in error.text.lower(), error.text
    browser.shot("policy-bad-name")
    assert not SigningPolicy.objects.exists()

    browser.fill("#id_name", "team-policy")
    browser.select("#id_key", text="team-signing")
    browser.shot("policy-good-name")
    save(browser)
    browser.wait_for("ul.messagelist li.success")
    browser.shot("policy-created")
    policy = SigningPolicy.objects.get()
    assert (policy.name, policy.key_id, policy.namespace.name) == ("team-policy", key.pk, "team")

    new = live_registry.push("team/app", "v1", seed="after-policy")
    pages.wait_for_tag_status(browser, "team/app:v1", "signed")
    browser.shot("pushed-image-signed", show=pages.status_cell(browser, "team/app:v1"))
    assert Signature.objects.get(manifest__digest=new).status == SignatureStatus.SIGNED

    row = pages.tag_row(browser, "team/old:v1")
    assert row is not None and pages.signature_status(row) == "unsigned"
    browser.press_and_wait(pages.sign_button(row))
    browser.shot("sign-clicked")
    pages.wait_for_tag_status(browser, "team/old:v1", "signed")
    browser.shot(
        "existing-image-signed-from-its-row", show=pages.status_cell(browser, "team/old:v1")
    )
    assert Signature.objects.get(manifest__digest=old).status == SignatureStatus.SIGNED
    assert wait_for_background_work(timeout=20)


@pytest.fixture
def signed_images(live_registry: LiveRegistry, policy: SigningPolicy) -> list[str]:
    """team/app v1 and v2, pushed and signed with the policy's key."""
    digests = []
    for number in (1, 2):
        digest = live_registry.push("team/app", f"v{number}", seed=f"signed{number}")
        live_registry.wait_recorded("team/app", f"v{number}", digest)
        digests.append(digest)
    wait_signed_with(policy.key, 2)
    return digests


def test_changing_the_policy_key_then_resigning_signs_every_image_with_the_new_key(
    browser: Browser, policy: SigningPolicy, signed_images: list[str]
):
    new_key = make_key("rotated-key")
    browser.open(f"/admin/signing/signingpolicy/{policy.pk}/change/")
    browser.wait_for("#id_key")
    browser.shot("policy-page")
    browser.select("#id_key", text="rotated-key")
    save(browser)
    browser.wait_for("ul.messagelist li")
    browser.shot("key-changed-resign-offered")
    policy.refresh_from_db()
    assert policy.key_id == new_key.pk

    browser.open(f"/admin/signing/signingpolicy/{policy.pk}/change/")
    button = browser.wait_for("#resign-button, #signing-resign")
    assert "2" in button.text, button.text
    browser.shot("resign-button")
    browser.submit_and_wait("#resign-button, #signing-resign")
    browser.shot("resign-started")

    wait_signed_with(new_key, 2)
    browser.open(f"/admin/signing/signingpolicy/{policy.pk}/change/")

    def no_resign_left() -> bool:
        return not browser.find_all("#resign-button, #signing-resign")

    browser.reload_until(no_resign_left, "no image left to re-sign")
    browser.shot("resign-done")
    pages.wait_for_tag_status(browser, "team/app:v1", "signed")
    pages.wait_for_tag_status(browser, "team/app:v2", "signed")
    browser.shot("tags-signed-with-new-key", show=pages.status_cell(browser, "team/app:v2"))


def test_deleting_the_policy_names_the_signature_count_and_leaves_no_policy(
    browser: Browser, policy: SigningPolicy, signed_images: list[str]
):
    browser.open(f"/admin/signing/signingpolicy/{policy.pk}/delete/")
    warning = browser.wait_for_text("removes 2 signature", "#content")
    assert "team" in warning.text
    browser.shot("delete-confirmation-with-count")
    browser.submit_and_wait("#content form input[type=submit], #content form button[type=submit]")
    browser.shot("after-delete")

    live_signet.wait_for(
        lambda: not SigningPolicy.objects.exists() and not Signature.objects.exists(),
        "the policy and its signatures to be gone",
        seconds=20,
    )
    pages.wait_for_tag_status(browser, "team/app:v1", "no-policy")
    pages.wait_for_tag_status(browser, "team/app:v2", "no-policy")
    browser.shot("tags-without-policy", show=pages.status_cell(browser, "team/app:v2"))

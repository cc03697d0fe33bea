"""Issue 12's console, in a real browser, by the element names the console gives its
parts (tests/browser/pages.py names the selectors): the layout at 1280x800, bulk signing with its
live progress page, the re-sign button while a re-sign runs, "Sign them now" after a policy
is created, the namespace deletion's way forward, and the overview on the admin home.

Signing goes through ``gated_registry``: while it holds, the work stays in progress, so
the tests see the pages during the work, then after it, without sleeping.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from kms import services as kms_services
from kms.models import Key
from kms.services.states import disable_key
from registry.models import Manifest, Namespace
from signing import services as signing_services
from signing.constants import SERVICE
from signing.models import Signature, SignatureStatus, SigningPolicy
from tests.browser import pages
from tests.browser.conftest import LiveRegistry
from tests.browser.gate import GatedProxy
from tests.browser.support import Browser, fully_inside
from tests.factories import make_key
from tests.support import live_signet

pytestmark = [pytest.mark.registry_server, pytest.mark.django_db(transaction=True)]

PROGRESS_URL = re.compile(r"/admin/signing/signingoperation/(\d+)/progress/")
# Long but ordinary names: the layout must hold with them, not just with "a:b".
LONG_REPOSITORY = "team/payments-settlement-service-backend"
LONG_TAG = "2026.11.30-build.4711-linux-amd64"
# Pages render on the server: an element the console names is there at once or missing.
PRESENT = 5.0
# A request that starts work must answer before it is done (signing is held meanwhile).
AT_ONCE = 8.0


def wait_recorded_all(live: LiveRegistry, images: list[tuple[str, str, str]]) -> None:
    for repository, tag, digest in images:
        live.wait_recorded(repository, tag, digest)


def push_unsigned(live: LiveRegistry, count: int, repository: str = "team/app") -> list[str]:
    """``count`` images pushed while no policy covers them (recorded, not signed)."""
    pushed = [
        (repository, f"v{number}", live.push(repository, f"v{number}", seed=f"old{number}"))
        for number in range(1, count + 1)
    ]
    wait_recorded_all(live, pushed)
    return [digest for _, _, digest in pushed]


def wait_signed(count: int, key: Key | None = None) -> None:
    def done() -> bool:
        rows = Signature.objects.filter(status=SignatureStatus.SIGNED)
        if key is not None:
            rows = rows.filter(key_id=key.key_id)
        return rows.count() == count

    live_signet.wait_for(done, f"{count} signed images", seconds=20)


def progress(page: Browser) -> dict[str, Any]:
    """The progress page's figures, read in one script (the page's own polling updates
    them between WebDriver calls, never during a script)."""
    found = page.driver.execute_script(
        "const get = s => { const e = document.querySelector(s);"
        " return e === null ? null : e.textContent.trim(); };"
        "const out = {state: get('#operation-state')};"
        "for (const n of ['total', 'pending', 'signed', 'failed'])"
        " out[n] = get('[data-progress=\"' + n + '\"]');"
        "return out;"
    )
    assert None not in found.values(), f"the progress page lacks a figure: {found}"
    counts: dict[str, Any] = {
        name: int(found[name]) for name in ("total", "pending", "signed", "failed")
    }
    counts["state"] = found["state"].lower()
    return counts


def wait_for_progress_page(page: Browser, *, seconds: float = AT_ONCE) -> int:
    """The progress page the request redirected to, at once (while signing is held)."""
    match = page.until(
        lambda: PROGRESS_URL.search(page.driver.current_url),
        "the redirect to the operation's progress page",
        seconds=seconds,
    )
    page.wait_for('[data-progress="total"]', seconds=PRESENT)
    return int(match.group(1))


def fetch_json(page: Browser, path: str) -> Any:
    """GET ``path`` from the page, with the browser's session (as the admin's JS would)."""
    return page.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {headers: {Accept: 'application/json'}, credentials: 'same-origin'})"
        ".then(r => r.json().then(body => done({status: r.status, body: body})))"
        ".catch(e => done({status: 0, body: String(e)}));",
        path,
    )


# --- 1. the layout at 1280x800 --------------------------------------------------------------


def test_first_tag_row_shows_reference_status_and_sign_inside_1280x800(
    browser: Browser, live_registry: LiveRegistry, policy: SigningPolicy
):
    digest = live_registry.push(LONG_REPOSITORY, LONG_TAG, seed="layout")
    live_registry.wait_recorded(LONG_REPOSITORY, LONG_TAG, digest)
    wait_signed(1)
    pages.open_tag_list(browser)
    assert browser.viewport() == (1280, 800)
    browser.shot("tag-list-at-1280x800")

    row = browser.find("#result_list tbody tr")
    reference = row.find_element(By.CSS_SELECTOR, "th.field-reference")
    assert reference.text.strip() == f"{LONG_REPOSITORY}:{LONG_TAG}"
    assert reference.find_elements(By.CSS_SELECTOR, "a"), "the reference is the row's link"
    results = browser.box(browser.find("#result_list"))
    for css in (".field-signature", ".field-operation"):
        box = browser.box(row.find_element(By.CSS_SELECTOR, css))
        assert fully_inside(box), f"{css} is not fully in the 1280x800 viewport: {box}"
        assert box["scrollX"] == 0 and box["scrollY"] == 0, box
        assert box["scrollWidth"] <= box["innerWidth"], f"horizontal scroll: {box}"
        assert box["right"] <= results["right"] + 0.5 or results["right"] <= 1280, box
    status = row.find_element(By.CSS_SELECTOR, "td.field-signature .signature-status")
    assert "signature-signed" in (status.get_attribute("class") or "").split()
    button = row.find_element(By.CSS_SELECTOR, "td.field-operation button.sign-button")
    assert button.text.strip() in {"Sign", "Re-sign"}

    # The tag page: pull reference, status, Sign.
    tag_link = reference.find_element(By.CSS_SELECTOR, "a")
    browser.press_and_wait(tag_link)
    pull = browser.wait_for("#pull-reference", seconds=PRESENT).text.strip()
    assert pull.endswith(f"/{LONG_REPOSITORY}:{LONG_TAG}") or pull.endswith(
        f"/{LONG_REPOSITORY}@{digest}"
    ), pull
    assert pull.startswith("registry.signet.test/"), pull
    assert "signature-signed" in (browser.find("#signature-status").get_attribute("class") or "")
    assert fully_inside(browser.box(browser.find("button.sign-button")))
    browser.shot("tag-page")


def test_policy_and_namespace_lists_show_name_health_and_counts_inside_1280px(
    browser: Browser, live_registry: LiveRegistry, policy: SigningPolicy
):
    status = re.compile(r"health|status|enabled|policy", re.IGNORECASE)
    counts = re.compile(
        r"signed|pending|failed|signature|count|images|repositor|tags", re.IGNORECASE
    )
    wanted = re.compile(f"name|{status.pattern}|{counts.pattern}", re.IGNORECASE)
    for path in ("/admin/signing/signingpolicy/", "/admin/registry/namespace/"):
        browser.open(path)
        browser.wait_for("#result_list tbody tr", seconds=PRESENT)
        browser.shot(f"list-{path.strip('/').replace('/', '-')}")
        headers = browser.find_all("#result_list thead th")
        cells = browser.find_all("#result_list tbody tr:first-child > *")
        checked = []
        for header, cell in zip(headers, cells, strict=False):
            if not wanted.search(header.text):
                continue
            box = browser.box(cell)
            assert box["left"] >= 0 and box["right"] <= 1280.5, f"{path} {header.text}: {box}"
            checked.append(header.text.strip().lower())
        assert any("name" in text for text in checked), f"{path}: no name column ({checked})"
        assert any(status.search(text) for text in checked), f"{path}: {checked}"
        assert any(counts.search(text) for text in checked), f"{path}: {checked}"
        # Long health text wraps instead of being cut.
        for cell in browser.find_all("#result_list tbody td[class*=health]"):
            style = browser.driver.execute_script(
                "const s = getComputedStyle(arguments[0]);"
                "return [s.whiteSpace, s.textOverflow, arguments[0].scrollWidth,"
                " arguments[0].clientWidth];",
                cell,
            )
            assert style[0] not in ("nowrap", "pre") or style[2] <= style[3], style


# --- 2. bulk signing with live progress -----------------------------------------------------


def test_bulk_sign_redirects_at_once_to_a_progress_page_that_counts_up_without_reload(
    browser: Browser,
    live_registry: LiveRegistry,
    gated_registry: GatedProxy,
    signing_key: Key,
    authorized: Any,
):
    push_unsigned(live_registry, 3)
    signing_services.create_policy(
        namespace=live_registry.namespace, name="team-policy", key=signing_key
    )
    pages.open_tag_list(browser)
    browser.click("#action-toggle")
    browser.shot("all-tags-selected")

    gated_registry.hold()
    with browser.page_load_timeout(AT_ONCE):
        pages.run_action(browser, "sign_selected")
    operation = wait_for_progress_page(browser)
    browser.mark_page()
    during = progress(browser)
    browser.shot("progress-while-signing")
    assert during["total"] == 3
    assert during["state"] == "running"
    assert during["pending"] + during["signed"] + during["failed"] == 3
    assert during["pending"] >= 1, during

    # The same figures in the API, and the rows under the tag list's "Pending" filter.
    api = fetch_json(browser, f"/api/v1/signing/operations/{operation}/")
    assert api["status"] == 200, api
    assert api["body"]["id"] == operation and api["body"]["state"] == "running", api
    assert api["body"]["total"] == 3 and api["body"]["pending"] >= 1, api
    with browser.new_tab():  # the progress page stays open, polling, in the first tab
        pages.open_tag_list(browser)
        pending_link = browser.driver.find_element(
            By.XPATH, "//*[@id='changelist-filter']//a[normalize-space()='Pending']"
        )
        browser.press_and_wait(pending_link)
        pending_rows = pages.tag_rows(browser)
        browser.shot("pending-filter-while-signing")
        assert len(pending_rows) == during["pending"], [row.text for row in pending_rows]
        assert all(pages.signature_status(row) == "pending" for row in pending_rows)

    gated_registry.release()
    final = browser.until(
        lambda: (lambda p: p if p["state"] == "finished" else None)(progress(browser)),
        "the operation to finish",
    )
    browser.shot("progress-finished")
    assert (final["total"], final["signed"], final["pending"], final["failed"]) == (3, 3, 0, 0)
    assert browser.page_marked(), "the progress page was reloaded instead of updated"
    api = fetch_json(browser, f"/api/v1/signing/operations/{operation}/")
    assert (api["body"]["state"], api["body"]["signed"], api["body"]["pending"]) == (
        "finished",
        3,
        0,
    ), api
    assert Signature.objects.filter(status=SignatureStatus.SIGNED).count() == 3


# --- 3. the re-sign button while a re-sign runs ---------------------------------------------


def test_while_a_resign_runs_the_policy_page_shows_a_disabled_button_with_its_progress(
    browser: Browser, live_registry: LiveRegistry, gated_registry: GatedProxy, policy
):
    for number in (1, 2, 3):
        digest = live_registry.push("team/app", f"v{number}", seed=f"resign{number}")
        live_registry.wait_recorded("team/app", f"v{number}", digest)
    wait_signed(3)
    new_key = make_key("rotated-key")
    signing_services.update_policy(policy=policy, key=new_key)

    browser.open(f"/admin/signing/signingpolicy/{policy.pk}/change/")
    button = browser.wait_for("button#resign-button, #signing-resign", seconds=PRESENT)
    assert "3" in button.text
    gated_registry.hold()
    with browser.page_load_timeout(AT_ONCE):
        browser.press_and_wait(button)
    wait_for_progress_page(browser)
    browser.shot("resign-progress")

    browser.open(f"/admin/signing/signingpolicy/{policy.pk}/change/")
    disabled = browser.wait_for("button#resign-button", seconds=PRESENT)
    browser.shot("policy-page-while-resigning")
    assert disabled.get_attribute("disabled") is not None
    match = re.search(r"re-sign in progress:\s*(\d+)\s*/\s*(\d+)", disabled.text, re.IGNORECASE)
    assert match, disabled.text
    assert int(match.group(2)) == 3 and int(match.group(1)) < 3, disabled.text

    gated_registry.release()
    wait_signed(3, key=new_key)
    browser.open(f"/admin/signing/signingpolicy/{policy.pk}/change/")
    browser.shot("policy-page-after-resign")
    buttons = browser.find_all("button#resign-button")
    assert not buttons or buttons[0].get_attribute("disabled") is None
    assert not any(
        re.search("in progress", b.text, re.IGNORECASE) for b in browser.find_all("button")
    )


# --- 4. "Sign them now" after a policy is created -------------------------------------------


def test_after_creating_a_policy_sign_them_now_signs_the_existing_images(
    browser: Browser,
    live_registry: LiveRegistry,
    gated_registry: GatedProxy,
    signing_key: Key,
    authorized: Any,
):
    push_unsigned(live_registry, 2)
    browser.open("/admin/signing/signingpolicy/add/")
    browser.select("#id_namespace", text="team")
    browser.fill("#id_name", "team-policy")
    browser.select("#id_key", text=signing_key.alias)
    browser.submit_and_wait("input[name=_save]")
    box = browser.wait_for("#unsigned-images", seconds=PRESENT)
    browser.shot("policy-created-sign-them-now")
    assert re.search(r"\b2 existing images in team are unsigned", box.text), box.text
    policy = SigningPolicy.objects.get()

    browser.open(f"/admin/signing/signingpolicy/{policy.pk}/change/")
    box = browser.wait_for("#unsigned-images", seconds=PRESENT)
    assert re.search(r"\b2 existing images in team are unsigned", box.text), box.text
    button = box.find_element(By.CSS_SELECTOR, "button#sign-existing")
    assert "sign them now" in button.text.lower()
    browser.shot("policy-page-sign-them-now")

    browser.press_and_wait(button)
    wait_for_progress_page(browser)
    browser.mark_page()
    final = browser.until(
        lambda: (lambda p: p if p["state"] == "finished" else None)(progress(browser)),
        "the operation to finish",
    )
    browser.shot("existing-images-signed")
    assert (final["total"], final["signed"], final["failed"]) == (2, 2, 0)
    assert browser.page_marked()
    browser.open(f"/admin/signing/signingpolicy/{policy.pk}/change/")
    assert not browser.find_all("#unsigned-images")


# --- 5. deleting a namespace that has a policy ----------------------------------------------


def test_deleting_a_namespace_with_a_policy_links_to_the_policy_delete_page(
    browser: Browser, live_registry: LiveRegistry, policy: SigningPolicy
):
    namespace = live_registry.namespace
    browser.open(f"/admin/registry/namespace/{namespace.pk}/delete/")
    browser.wait_for("#content")
    browser.shot("namespace-delete")
    body = browser.text("#content")
    assert "permission" not in body.lower(), body
    assert "delete the signing policy first" in body.lower(), body
    link = browser.find("a#delete-policy-link")
    assert (link.get_attribute("href") or "").endswith(
        f"/admin/signing/signingpolicy/{policy.pk}/delete/"
    )
    browser.press_and_wait(link)
    browser.wait_for_text(policy.name, "#content")
    browser.shot("policy-delete-from-the-link")
    assert Namespace.objects.filter(pk=namespace.pk).exists()


# --- 6. the admin home ----------------------------------------------------------------------


def test_admin_home_shows_the_signing_overview_and_the_apps_in_flow_order(
    browser: Browser, live_registry: LiveRegistry, policy: SigningPolicy
):
    signed = live_registry.push("team/app", "v1", seed="home1")
    live_registry.wait_recorded("team/app", "v1", signed)
    wait_signed(1)
    disable_key(key_id=str(policy.key.key_id))
    failed = live_registry.push("team/app", "v2", seed="home2")
    live_registry.wait_recorded("team/app", "v2", failed)
    live_signet.wait_for(
        lambda: (
            Signature.objects.filter(status=SignatureStatus.FAILED).exists()
            or Manifest.objects.filter(digest=failed, signatures__isnull=True).exists()
        ),
        "the push under a disabled key to be handled",
        seconds=20,
    )

    browser.open("/admin/")
    overview = browser.wait_for("#signing-overview", seconds=PRESENT)
    browser.shot("admin-home", show=overview)
    rows = overview.find_elements(By.CSS_SELECTOR, "tr.overview-row")
    row = next((r for r in rows if "live" in r.text and "team" in r.text), None)
    assert row is not None, [r.text for r in rows]
    text = row.text.lower()
    assert "team-policy" in text or "enabled" in text, row.text
    assert "disabled" in text, f"the key's state is missing: {row.text}"
    assert re.search(r"\b1\b", text), row.text
    # Readable at 1280x800: inside the viewport's width, no column squeezed to a letter
    # per line (a row of ordinary words stays a few lines high).
    table = browser.box(overview)
    assert table["left"] >= 0 and table["right"] <= 1280.5, table
    for cell in row.find_elements(By.CSS_SELECTOR, "th, td"):
        box = browser.box(cell)
        assert box["height"] <= 160, f"a squeezed overview cell {cell.text!r}: {box}"
    for header in overview.find_elements(By.CSS_SELECTOR, "thead th"):
        assert browser.box(header)["height"] <= 80, f"a squeezed header {header.text!r}"
    failures = browser.find("#recent-failures")
    assert "team/app" in failures.text, failures.text

    order = browser.driver.execute_script(
        "return Array.from(document.querySelectorAll('#content-main [class*=app-]'))"
        ".map(e => Array.from(e.classList).find(c => c.startsWith('app-')));"
    )
    positions = {label: order.index(f"app-{label}") for label in ("signing", "registry", "kms")}
    assert positions["signing"] < positions["registry"] < positions["kms"], order
    later = [
        order.index(f"app-{label}") for label in ("accounts", "audit") if f"app-{label}" in order
    ]
    assert all(position > positions["kms"] for position in later), order


# --- 7. confirmations before revoking the service or disabling a used key ------------------


def confirm_page_names_what_breaks(page: Browser, policy: SigningPolicy) -> WebElement:
    """The confirmation names the policy, its namespace, the one waiting image; returns
    its "Yes, I'm sure" button."""
    body = page.wait_for("#content", seconds=PRESENT).text
    assert policy.name in body and policy.namespace.name in body, body
    assert re.search(r"\b1\b[^.\n]{0,40}image", body), f"no pending image count: {body}"
    return page.driver.find_element(
        By.XPATH,
        "//*[@id='content']//input[@type='submit' and contains(@value, 'Yes')]"
        " | //*[@id='content']//button[@type='submit' and contains(., 'Yes')]",
    )


def test_revoking_the_service_or_disabling_a_used_key_asks_first_naming_what_breaks(
    browser: Browser, live_registry: LiveRegistry, gated_registry: GatedProxy, policy, authorized
):
    gated_registry.hold()  # one image waits for its signature meanwhile
    digest = live_registry.push("team/app", "v1", seed="waiting")
    live_registry.wait_recorded("team/app", "v1", digest)

    browser.open("/admin/kms/serviceauthorization/")
    browser.click("#action-toggle")
    pages.run_action(browser, "revoke")
    browser.shot("revoke-confirmation")
    assert kms_services.is_service_authorized(SERVICE), "revoked without asking"
    browser.press_and_wait(confirm_page_names_what_breaks(browser, policy))
    browser.shot("revoked")
    assert not kms_services.is_service_authorized(SERVICE)

    browser.open("/admin/kms/key/")
    pages.select_key_row(browser, policy.key.alias)
    pages.run_action(browser, "disable_keys")
    browser.shot("disable-key-confirmation")
    policy.key.refresh_from_db()
    assert policy.key.state == "Enabled", "disabled without asking"
    browser.press_and_wait(confirm_page_names_what_breaks(browser, policy))
    browser.shot("key-disabled")
    policy.key.refresh_from_db()
    assert policy.key.state == "Disabled"

"""What the browser tests read on the admin's pages: the element names the console gives
them (issue 12): the tag list's ``.field-reference``, ``.field-signature`` (a
``span.signature-status.signature-<status>``) and ``button.sign-button``."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from tests.browser.support import Browser

TAG_LIST = "/admin/registry/tag/"
SIGN_BUTTON = "button.sign-button"
STATUSES = ("signed", "pending", "failed", "unsigned", "no-policy")


def _cells(row: WebElement, css: str) -> list[WebElement]:
    return row.find_elements(By.CSS_SELECTOR, css)


def row_reference(row: WebElement) -> str:
    """``repository:tag`` of a tag-list row."""
    return _cells(row, ".field-reference")[0].text.strip()


def tag_rows(page: Browser) -> list[WebElement]:
    return page.find_all("#result_list tbody tr")


def tag_row(page: Browser, reference: str) -> WebElement | None:
    return next((row for row in tag_rows(page) if row_reference(row) == reference), None)


def signature_status(row_or_page: WebElement) -> str:
    """signed|pending|failed|unsigned|no-policy, from the status span's class."""
    cell = next(iter(_cells(row_or_page, ".field-signature, #signature-status")), None)
    if cell is None:
        return "missing"
    spans = _cells(cell, ".signature-status") or (
        [cell] if "signature-status" in (cell.get_attribute("class") or "") else []
    )
    for name in (spans[0].get_attribute("class") or "").split() if spans else []:
        if name.startswith("signature-") and name != "signature-status":
            return name.removeprefix("signature-")
    return f"unknown: {cell.text.strip()}"


def open_tag_list(page: Browser, search: str = "") -> None:
    page.open(TAG_LIST + (f"?q={search}" if search else ""))
    page.wait_for("#changelist")


def wait_for_tag_status(page: Browser, reference: str, status: str, *, search: str = "") -> None:
    """Reload the tag list until the row of ``reference`` shows ``status``."""
    open_tag_list(page, search)

    def shows() -> bool:
        row = tag_row(page, reference)
        return row is not None and signature_status(row) == status

    page.reload_until(shows, f"{reference} {status} in the tag list")


def status_cell(page: Browser, reference: str) -> WebElement | None:
    """The signature cell of a row (to scroll it into a screenshot)."""
    row = tag_row(page, reference)
    cells = _cells(row, ".field-signature") if row is not None else []
    return cells[0] if cells else None


def sign_button(row: WebElement) -> WebElement:
    button = next(iter(_cells(row, SIGN_BUTTON)), None)
    assert button is not None, f"no Sign button in the row {row.text!r}"
    return button


def select_rows(page: Browser, references: list[str]) -> None:
    for reference in references:
        row = tag_row(page, reference)
        assert row is not None, f"no row {reference}"
        row.find_element(By.CSS_SELECTOR, "input.action-select").click()


def select_key_row(page: Browser, alias: str) -> None:
    """Tick the checkbox of the key list's row for ``alias``."""
    rows = [row for row in page.find_all("#result_list tbody tr") if alias in row.text]
    assert rows, f"no key {alias} in the list"
    rows[0].find_element(By.CSS_SELECTOR, "input.action-select").click()


def run_action(page: Browser, action: str) -> None:
    """Choose a changelist action by its name and press Go."""
    page.select("select[name=action]", value=action)
    page.submit_and_wait("button[name=index], .actions button[type=submit]")

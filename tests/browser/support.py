"""Driving Debian's Chromium for the admin's browser tests.

``start_chrome()`` starts ``/usr/bin/chromium`` through ``/usr/bin/chromedriver``, headless,
with a fresh profile: both paths are given to Selenium, so Selenium Manager (which would
look for, and download, a driver and a browser) is never run. Chromium's own background
traffic (component updates, sync, field trials, QUIC) is switched off: the tests talk to
the loopback live server only.

``Browser`` is one test's view of that driver: the live server's base URL, the viewport
(exactly 1280x800 CSS pixels unless a test asks for another), waits for text and elements,
and ``shot(step)``, which saves ``<nn>-<step>.png`` in the test's screenshot folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
VIEWPORT = (1280, 800)
# Where screenshots go: $SIGNET_SCREENSHOTS, else artifacts/browser at the checkout's root.
SCREENSHOTS_ENV = "SIGNET_SCREENSHOTS"
DEFAULT_SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"
# How long a page may take to show what a test waits for (pages render on the server, so
# this is only reached when something is wrong or background signing is slow).
WAIT_SECONDS = 20.0

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-field-trial-config",
    "--metrics-recording-only",
    "--password-store=basic",
    "--lang=en-US",
    # No name resolves except the loopback's: whatever a page or Chromium itself asks for,
    # nothing leaves the machine.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]

T = TypeVar("T")


def screenshots_root() -> Path:
    configured = os.environ.get(SCREENSHOTS_ENV, "").strip()
    return Path(configured) if configured else DEFAULT_SCREENSHOTS


class Chrome:
    """A headless Chromium and its driver, with a profile removed on ``quit()``."""

    def __init__(self) -> None:
        for path in (CHROMIUM, CHROMEDRIVER):
            if not os.access(path, os.X_OK):
                raise RuntimeError(
                    f"{path} is missing: install Debian's chromium and chromium-driver "
                    "(scripts/system-packages --tests, run by make test)."
                )
        self._start()

    def _start(self) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="signet-chromium-"))
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={self.profile}"]:
            options.add_argument(flag)
        # A driver path given to the Service: Selenium does not run Selenium Manager.
        service = Service(executable_path=CHROMEDRIVER)
        try:
            self.driver = webdriver.Chrome(service=service, options=options)
        except WebDriverException:
            shutil.rmtree(self.profile, ignore_errors=True)
            raise
        self.driver.set_page_load_timeout(WAIT_SECONDS)
        self.driver.set_script_timeout(WAIT_SECONDS)

    def ready(self) -> webdriver.Chrome:
        """The driver, started again if the previous test left it unusable (crashed)."""
        try:
            self.driver.execute_script("return 1")
        except WebDriverException:
            with contextlib.suppress(WebDriverException):
                self.quit()
            self._start()
        return self.driver

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:80] or "step"


class Browser:
    """One test's browser: the driver, the live server's URL, waits and screenshots."""

    def __init__(self, driver: webdriver.Chrome, base_url: str, shots: Path) -> None:
        self.driver = driver
        self.base_url = base_url.rstrip("/")
        self.shots = shots
        self.step = 0

    # --- viewport, navigation, screenshots ---------------------------------------------

    def set_viewport(self, width: int = VIEWPORT[0], height: int = VIEWPORT[1]) -> None:
        """innerWidth x innerHeight exactly, whatever the window's chrome takes."""
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def viewport(self) -> tuple[int, int]:
        width, height = self.driver.execute_script("return [innerWidth, innerHeight]")
        return int(width), int(height)

    @contextlib.contextmanager
    def page_load_timeout(self, seconds: float) -> Iterator[None]:
        """A shorter page-load limit (for a click that must answer at once)."""
        self.driver.set_page_load_timeout(seconds)
        try:
            yield
        finally:
            self.driver.set_page_load_timeout(WAIT_SECONDS)

    @contextlib.contextmanager
    def new_tab(self) -> Iterator[None]:
        """Work in a second tab (same session, same viewport), then return to this one."""
        first = self.driver.current_window_handle
        self.driver.switch_to.new_window("tab")
        try:
            self.set_viewport()
            yield
        finally:
            self.driver.close()
            self.driver.switch_to.window(first)

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    @property
    def path(self) -> str:
        url = self.driver.current_url
        return url[len(self.base_url) :] if url.startswith(self.base_url) else url

    def shot(self, step: str, *, show: WebElement | None = None) -> Path:
        """Save the viewport as ``<nn>-<step>.png`` in this test's folder (scrolled to
        ``show`` first, when given)."""
        if show is not None:
            self.driver.execute_script(
                "arguments[0].scrollIntoView({block: 'nearest', inline: 'nearest'})", show
            )
        self.step += 1
        self.shots.mkdir(parents=True, exist_ok=True)
        target = self.shots / f"{self.step:02d}-{_slug(step)}.png"
        self.driver.save_screenshot(str(target))
        return target

    # --- finding and waiting ---------------------------------------------------------

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str = "body") -> str:
        return self.find(css).text

    def until(
        self, probe: Callable[[], T | None], what: str, *, seconds: float = WAIT_SECONDS
    ) -> T:
        """``probe()``'s first truthy value (elements going stale meanwhile are retried)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                value = probe()
            except (StaleElementReferenceException, IndexError):
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                self.shot(f"timeout-{what}")
                raise AssertionError(
                    f"timed out after {seconds:.0f}s waiting for {what} on {self.path}"
                )
            time.sleep(0.1)

    def wait_for(self, css: str, *, seconds: float = WAIT_SECONDS) -> WebElement:
        return self.until(lambda: next(iter(self.find_all(css)), None), css, seconds=seconds)

    def wait_for_text(
        self, text: str, css: str = "body", *, seconds: float = WAIT_SECONDS
    ) -> WebElement:
        def probe() -> WebElement | None:
            return next((e for e in self.find_all(css) if text in e.text), None)

        return self.until(probe, f"{text!r} in {css}", seconds=seconds)

    def reload_until(
        self, probe: Callable[[], T | None], what: str, *, seconds: float = WAIT_SECONDS
    ) -> T:
        """Reload the page until ``probe()`` is truthy (for pages that do not poll)."""
        first = [True]

        def reloading() -> T | None:
            if not first[0]:
                self.driver.refresh()
            first[0] = False
            return probe()

        return self.until(reloading, what, seconds=seconds)

    # --- forms -------------------------------------------------------------------------

    def fill(self, css: str, value: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(value)

    def select(self, css: str, *, text: str | None = None, value: str | None = None) -> None:
        """Choose an option by (a part of) its visible text, or by its value."""
        element = Select(self.find(css))
        if value is not None:
            element.select_by_value(value)
            return
        assert text is not None
        for option in element.options:
            if text in option.text:
                option.click()
                return
        choices = [option.text for option in element.options]
        raise AssertionError(f"no option containing {text!r} in {css}: {choices}")

    def click(self, css: str) -> None:
        element = self.find(css)
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        element.click()

    def submit_and_wait(self, css: str) -> None:
        """Click a submit button and wait until the next page has replaced this one."""
        self.press_and_wait(self.find(css))

    def press_and_wait(self, element: WebElement) -> None:
        """Click ``element`` (a submit button or link) and wait for the next page."""
        old_html = self.find("html")
        label = element.text or element.get_attribute("value") or element.tag_name
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        element.click()
        self.until(
            lambda: _is_stale(old_html),
            f"the page after clicking {label!r}",
        )
        self.until(
            lambda: self.driver.execute_script("return document.readyState") == "complete",
            "the page to load",
        )

    # --- admin -------------------------------------------------------------------------

    def log_in(self, username: str, password: str) -> None:
        self.open("/admin/login/?next=/admin/")
        self.fill("#id_username", username)
        self.fill("#id_password", password)
        self.submit_and_wait("input[type=submit], button[type=submit]")
        self.wait_for("#user-tools")

    def messages(self) -> list[str]:
        return [element.text for element in self.find_all("ul.messagelist li")]

    def errors(self) -> list[str]:
        return [element.text for element in self.find_all(".errorlist li, .errornote")]

    def box(self, element: WebElement) -> dict[str, Any]:
        """The element's bounding box and the viewport, in CSS pixels."""
        return self.driver.execute_script(
            "const r = arguments[0].getBoundingClientRect();"
            "return {left: r.left, top: r.top, right: r.right, bottom: r.bottom,"
            " width: r.width, height: r.height, innerWidth: innerWidth,"
            " innerHeight: innerHeight, scrollX: scrollX, scrollY: scrollY,"
            " scrollWidth: document.documentElement.scrollWidth};",
            element,
        )

    def mark_page(self) -> None:
        """Tag the current document; ``page_marked()`` is False once it was reloaded/left."""
        self.driver.execute_script("window.__signetMark = 'kept';")

    def page_marked(self) -> bool:
        return self.driver.execute_script("return window.__signetMark === 'kept';") is True


def _is_stale(element: WebElement) -> bool:
    try:
        element.is_enabled()
    except WebDriverException:  # stale, or "does not belong to the document" mid-navigation
        return True
    return False


def fully_inside(box: dict[str, Any]) -> bool:
    """The box lies within the viewport (a pixel of rounding allowed) and is not empty."""
    return (
        box["width"] > 0
        and box["height"] > 0
        and box["left"] >= -0.5
        and box["top"] >= -0.5
        and box["right"] <= box["innerWidth"] + 0.5
        and box["bottom"] <= box["innerHeight"] + 0.5
    )

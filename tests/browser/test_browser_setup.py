"""The browser the tests drive: Debian's Chromium through Debian's chromedriver (nothing
fetched by Selenium Manager), exactly 1280x800, screenshots where the README says."""

from __future__ import annotations

import struct
import subprocess

import pytest
from selenium.common.exceptions import WebDriverException

from tests.browser import support
from tests.browser.support import CHROMEDRIVER, CHROMIUM, Browser, Chrome


def version_of(binary: str) -> str:
    output = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return next(word for word in output.split() if word[:1].isdigit() and "." in word)


def png_size(path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


@pytest.mark.django_db(transaction=True)
def test_the_tests_drive_debians_chromium_and_chromedriver_at_exactly_1280x800(
    chrome: Chrome, browser: Browser
):
    capabilities = chrome.driver.capabilities
    assert capabilities["browserName"] == "chrome"
    assert capabilities["browserVersion"] == version_of(CHROMIUM)
    assert capabilities["chrome"]["chromedriverVersion"].startswith(version_of(CHROMEDRIVER))
    # The driver is the one given to the Service: Selenium Manager was not asked for one.
    assert chrome.driver.service.path == CHROMEDRIVER
    assert chrome.driver.execute_script("return navigator.webdriver") is True

    browser.open("/admin/")
    browser.wait_for("#user-tools")
    assert browser.viewport() == (1280, 800)
    shot = browser.shot("admin-home")
    assert shot.parent == browser.shots
    assert shot.name == "01-admin-home.png"
    assert png_size(shot) == (1280, 800)

    # Only the loopback: any other host name fails to resolve inside Chromium.
    with pytest.raises(WebDriverException, match="ERR_NAME_NOT_RESOLVED"):
        browser.driver.get("http://example.com/")


def test_screenshots_go_to_the_folder_named_by_signet_screenshots(monkeypatch, tmp_path):
    monkeypatch.setenv(support.SCREENSHOTS_ENV, str(tmp_path / "shots"))
    assert support.screenshots_root() == tmp_path / "shots"
    monkeypatch.delenv(support.SCREENSHOTS_ENV)
    assert support.screenshots_root() == support.DEFAULT_SCREENSHOTS
    assert support.DEFAULT_SCREENSHOTS.parts[-2:] == ("artifacts", "browser")

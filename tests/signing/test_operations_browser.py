"""Issue 12, point 2, in a real browser: the progress page updates its counts and its
state by itself (headless Debian chromium through chromedriver, on a live server).

The rows are recorded only (no registry): the test plays the worker by recording them
signed, and the page, never reloaded, must show it within a few polls.
"""

from __future__ import annotations

import shutil

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from registry import services as registry_services
from registry.models import Manifest, Repository, Tag
from signing import services
from signing.models import Signature, SignatureStatus, SigningOperation, SigningOperationItem
from tests.factories import make_key

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,800")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def _operation_with_pending_rows(superuser) -> tuple[SigningOperation, list[Signature]]:
    from kms import services as kms_services
    from kms.models import AuthorizedService

    kms_services.grant_service_authorization(service=AuthorizedService.REGISTRY_SIGNING)
    instance, _ = registry_services.create_instance(
        name="offline", backend_url="http://127.0.0.1:9", default_domain="offline.example.com"
    )
    namespace = registry_services.create_namespace(instance=instance, name="team")
    key = make_key("signer")
    policy = services.create_policy(namespace=namespace, name="team-policy", key=key).policy
    repository = Repository.objects.create(namespace=namespace, name="team/app")
    now = timezone.now()
    rows = []
    for number in range(2):
        manifest = Manifest.objects.create(
            repository=repository,
            digest="sha256:" + f"{number + 1:064x}",
            media_type="application/vnd.oci.image.manifest.v1+json",
            size=100,
            pushed_at=now,
        )
        Tag.objects.create(
            repository=repository,
            name=f"v{number}",
            manifest=manifest,
            pushed_at=now,
            updated_at=now,
        )
        rows.append(Signature.objects.create(policy=policy, manifest=manifest, trigger="manual"))
    operation = SigningOperation.objects.create(
        kind="sign",
        created_by=superuser,
        created_at=now,
        policy=policy,
        instance=instance,
        namespace=namespace,
        namespace_name="team",
    )
    SigningOperationItem.objects.bulk_create(
        [SigningOperationItem(operation=operation, signature=row) for row in rows]
    )
    return operation, rows


def test_the_progress_page_updates_itself_without_reload(live_server, browser, superuser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    operation, rows = _operation_with_pending_rows(superuser)
    client = Client()
    client.force_login(superuser)
    browser.get(live_server.url + "/admin/login/")
    name = settings.SESSION_COOKIE_NAME
    browser.add_cookie({"name": name, "value": client.cookies[name].value})
    url = reverse("admin:signing_signingoperation_progress", args=[operation.pk])
    browser.get(live_server.url + url)

    def text(selector: str) -> str:
        return browser.find_element(By.CSS_SELECTOR, selector).text

    assert (text('[data-progress="pending"]'), text("#operation-state")) == ("2", "running")
    browser.execute_script("window.__notReloaded = true;")

    # The worker's part: both rows signed with the policy's key.
    key = rows[0].policy.key
    Signature.objects.filter(pk__in=[row.pk for row in rows]).update(
        status=SignatureStatus.SIGNED,
        signed_at=timezone.now(),
        signature_value="c2ln",
        key_id=key.key_id,
        key_fingerprint=key.public_key_fingerprint,
    )

    WebDriverWait(browser, 10).until(lambda _: text("#operation-state") == "finished")
    assert text('[data-progress="signed"]') == "2"
    assert text('[data-progress="pending"]') == "0"
    assert browser.execute_script("return window.__notReloaded === true;")

"""Fixtures of the browser tests: headless Chromium against the live Signet and a real registry.

- ``chrome``: one Chromium per pytest process (per xdist worker), started once: a
  ``support.Chrome`` (Debian's chromium through chromium-driver; never Selenium Manager).
- ``browser``: a ``support.Browser`` on the live server (``signet``: pytest-django's
  ``live_server``, so the test database is transactional and the server's threads see what
  the test writes), cookies cleared, the viewport exactly 1280x800, signed in through the
  login form as the superuser ``root``. Screenshots go to
  ``$SIGNET_SCREENSHOTS/<module>.<test>/`` (default ``artifacts/browser/``), emptied first.
- ``live_registry``: the registry instance ``live`` whose real docker-registry notifies the
  live server (so a push is recorded, and signed when a policy covers it), with the
  namespace ``team``. Signing runs in the background pool, as in production.
- ``signing_key`` / ``authorized`` / ``policy``: made through the services, for the tests
  whose subject is a later step of the flow.
- ``gated_registry``: Signet reaches that registry through a proxy the test can hold, so
  signing stays under way while the test looks at the pages (pushes go straight through).
- A failing test leaves ``<nn>-failed.png``, the page as it was, beside its steps.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kms import services as kms_services
from kms.models import AuthorizedService, Key
from registry import services as registry_services
from registry.client import RegistryClient
from registry.models import Instance, Namespace, Tag
from signing import services as signing_services
from signing.dispatch import wait_for_background_work
from signing.models import Signature, SignatureStatus, SigningPolicy
from tests.browser.gate import GatedProxy
from tests.browser.support import Browser, Chrome, screenshots_root
from tests.factories import make_key
from tests.support import live_signet
from tests.support.live_signet import signet_url
from tests.support.oci import push_image
from tests.support.registry_server import RegistryServer

DOMAIN = "registry.signet.test"
NAMESPACE = "team"
ADMIN_PASSWORD = "pw-for-tests"  # the root conftest's superuser


@pytest.fixture(scope="session")
def chrome() -> Iterator[Chrome]:
    browser = Chrome()
    yield browser
    browser.quit()


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Path:
    module = request.node.module.__name__.rsplit(".", 1)[-1]
    folder = screenshots_root() / f"{module}.{request.node.name}"
    shutil.rmtree(folder, ignore_errors=True)
    return folder


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keeps each phase's report on the test, so ``browser`` can tell that it failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def browser(
    request: pytest.FixtureRequest,
    chrome: Chrome,
    signet: Any,
    superuser: Any,
    settings: Any,
    screenshots: Path,
) -> Iterator[Browser]:
    # The live server speaks plain HTTP on the loopback: cookies without the Secure flag.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    # Signing in the background pool, as production does without a broker.
    settings.SIGNING_DISPATCH = "thread"
    driver = chrome.ready()
    driver.delete_all_cookies()
    page = Browser(driver, signet_url(signet), screenshots)
    page.set_viewport()
    assert page.viewport() == (1280, 800)
    page.log_in(superuser.username, ADMIN_PASSWORD)
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        with contextlib.suppress(Exception):  # the page as the failure left it, if any
            page.shot("failed")


@dataclass
class LiveRegistry:
    instance: Instance
    namespace: Namespace
    server: RegistryServer
    client: RegistryClient

    def push(self, repository: str, tag: str, *, seed: str) -> str:
        """Push an image; the registry then notifies the live server. Returns its digest."""
        return push_image(self.client, repository, tag, seed=seed)

    def wait_recorded(self, repository: str, tag: str, digest: str) -> Tag:
        """Until the registry's notification of that push has been recorded."""

        def recorded() -> bool:
            return Tag.objects.filter(
                repository__name=repository, name=tag, manifest__digest=digest
            ).exists()

        live_signet.wait_for(recorded, f"{repository}:{tag} to be recorded", seconds=20)
        return Tag.objects.get(repository__name=repository, name=tag)


@pytest.fixture
def live_registry(
    signet: Any,
    browser: Browser,
    registry_server_factory: Callable[..., RegistryServer],
) -> Iterator[LiveRegistry]:
    """A real registry posting its notifications to the live Signet (``browser`` first: it
    switches signing to the background pool before anything is pushed)."""
    instance, token = registry_services.create_instance(
        name="live", backend_url="http://127.0.0.1:9", default_domain=DOMAIN
    )
    server = registry_server_factory(
        notify_url=signet_url(signet) + registry_services.webhook_path(instance=instance),
        notify_token=token,
        extra_config={"notifications": {"events": {"includereferences": True}}},
    )
    instance = registry_services.update_instance(instance=instance, backend_url=server.url)
    namespace = registry_services.create_namespace(instance=instance, name=NAMESPACE)
    client = RegistryClient(server.url, backoff=0.05)
    yield LiveRegistry(instance, namespace, server, client)
    wait_for_background_work(timeout=20)
    client.close()


@pytest.fixture
def signing_key(db: None) -> Key:
    return make_key("browser-key")


@pytest.fixture
def authorized(db: None) -> Any:
    return kms_services.grant_service_authorization(
        service=AuthorizedService.REGISTRY_SIGNING, note="browser tests"
    )


@pytest.fixture
def policy(live_registry: LiveRegistry, signing_key: Key, authorized: Any) -> SigningPolicy:
    return signing_services.create_policy(
        namespace=live_registry.namespace, name="team-policy", key=signing_key
    ).policy


@pytest.fixture
def gated_registry(live_registry: LiveRegistry) -> Iterator[GatedProxy]:
    """Signet reaches the registry through a ``GatedProxy`` (pushes still go straight to the
    registry): ``hold()`` keeps signing work pending until ``release()``."""
    assert live_registry.server.port is not None
    proxy = GatedProxy(("127.0.0.1", live_registry.server.port))
    proxy.start()
    live_registry.instance = registry_services.update_instance(
        instance=live_registry.instance, backend_url=proxy.url
    )
    yield proxy
    proxy.release()
    # Work a failed test left held (in the background or inside a request the browser gave
    # up on) finishes against the registry before the proxy stops and the tables are flushed.
    with contextlib.suppress(AssertionError):
        live_signet.wait_for(
            lambda: not Signature.objects.filter(status=SignatureStatus.PENDING).exists(),
            "held signing work to finish",
            seconds=30,
        )
    wait_for_background_work(timeout=30)
    proxy.wait_quiet()
    proxy.stop()

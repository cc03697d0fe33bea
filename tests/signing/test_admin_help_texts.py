"""Every admin page, loaded with data present: help texts are shown as written.

Admin help texts are HTML. A placeholder like ``<domain>`` written unescaped is swallowed
by the browser as an unknown tag (the domain help read "identity (//)"); escaped twice it
shows as "&lt;domain&gt;". This walks every registered model admin's changelist, add and
change pages as a superuser and reads each help text the way a browser shows it.
"""

from __future__ import annotations

import contextlib
import re
from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.urls import NoReverseMatch, reverse

from kms import services as kms_services
from kms.models import AuthorizedService
from registry import services as registry_services
from signing import services
from signing.models import SignatureStatus
from tests.factories import make_key
from tests.signing.test_admin import add_signature, record_tag

pytestmark = pytest.mark.django_db

# Tags a help text may use; anything else is a placeholder the browser swallowed.
MARKUP = {"a", "b", "br", "code", "div", "em", "i", "kbd", "li", "p", "pre", "small", "span"}
MARKUP |= {"strong", "ul", "ol", "tt", "details", "summary"}
# What is left where a swallowed placeholder was: "()", "(//)", "( / )", "identity ()".
EMPTY_BRACKETS = re.compile(r"\(\s*[/:@.\s]*\)")


class HelpTexts(HTMLParser):
    """The text of every element with the class ``help`` (how the admin shows help texts),
    with the unknown tags found inside them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self.unknown: list[str] = []
        self._depth = 0  # inside a help element: how deep

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if self._depth:
            if tag not in MARKUP and tag not in {"img", "input"}:
                self.unknown.append(tag)
            if tag not in {"br", "img", "input"}:
                self._depth += 1
        elif "help" in classes and tag in {"div", "p", "span"}:
            self._depth = 1
            self.texts.append("")

    def handle_endtag(self, tag: str) -> None:
        if self._depth and tag not in {"br", "img", "input"}:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.texts[-1] += data


def admin_pages() -> list[str]:
    """Each registered model's changelist, add page and the change page of its first row."""
    urls = []
    for model in admin.site._registry:
        info = model._meta.app_label, model._meta.model_name
        urls.append(reverse("admin:{}_{}_changelist".format(*info)))
        with contextlib.suppress(NoReverseMatch):
            urls.append(reverse("admin:{}_{}_add".format(*info)))
        obj = model._default_manager.order_by("pk").first()
        if obj is not None:
            urls.append(reverse("admin:{}_{}_change".format(*info), args=[quote(obj.pk)]))
    return urls


@pytest.fixture
def scene(superuser):
    """One of everything: an instance, namespaces, a key, the grant, a policy, tags with
    signed, failed and re-signed signatures."""
    kms_services.grant_service_authorization(
        service=AuthorizedService.REGISTRY_SIGNING, granted_by=superuser
    )
    instance, _ = registry_services.create_instance(
        name="local",
        backend_url="http://127.0.0.1:9",
        default_domain="127.0.0.1:5000",
        custom_domains=["registry.example.com"],
    )
    namespace = registry_services.create_namespace(instance=instance, name="team-a")
    registry_services.create_namespace(instance=instance, name="bare")
    old_key = make_key("old-signer")
    key = make_key("image-signing")
    policy = services.create_policy(
        namespace=namespace, name="team-a-policy", key=old_key, created_by=superuser
    ).policy
    signed = record_tag(namespace, "team-a/app", "v1")
    add_signature(policy, signed, SignatureStatus.SIGNED)
    services.update_policy(policy=policy, key=str(key.pk))
    failed = record_tag(namespace, "team-a/app", "v2")
    add_signature(policy, failed, SignatureStatus.FAILED)
    record_tag(namespace, "team-a/web", "latest")
    return policy


def test_no_admin_page_shows_a_help_text_with_a_swallowed_or_double_escaped_placeholder(
    admin_client, scene
):
    loaded, problems = [], []
    for url in admin_pages():
        response = admin_client.get(url)
        if response.status_code == 403:  # read-only models have no add page
            continue
        assert response.status_code == 200, url
        loaded.append(url)
        parser = HelpTexts()
        parser.feed(response.content.decode())
        if parser.unknown:
            problems.append(f"{url}: unknown tags in help texts: {parser.unknown}")
        for text in parser.texts:
            if EMPTY_BRACKETS.search(text) or "&lt;" in text or "&gt;" in text:
                problems.append(f"{url}: {' '.join(text.split())!r}")

    assert len(loaded) >= 30, loaded
    assert not problems, "\n".join(problems)


def test_no_form_of_signet_lets_the_browser_cut_a_value(admin_client, scene):
    """No ``maxlength`` on Signet's admin forms: a browser cuts a longer value silently
    (a 61-character alias was saved as 60); the server refuses it naming the limit."""
    forms = [
        url
        for url in admin_pages()
        if url.endswith(("/add/", "/change/")) and not url.startswith("/admin/auth/")
    ]
    cut = []
    for url in forms:
        response = admin_client.get(url)
        if response.status_code == 200 and "maxlength" in response.content.decode():
            cut.append(url)

    assert len(forms) >= 15
    assert cut == []

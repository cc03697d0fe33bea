"""The API docs pages work offline: every asset is a local static file."""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.staticfiles import finders

from tests.api.conftest import auth

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


def _static_assets(html: str) -> list[str]:
    return [url for url in ASSET.findall(html) if not url.startswith("#")]


def test_the_docs_page_loads_only_local_static_assets(client, admin_user):
    client.force_login(admin_user)
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "http://" not in html and "https://" not in html
    assets = _static_assets(html)
    assert any(asset.endswith("swagger-ui-dist/swagger-ui-bundle.js") for asset in assets)
    assert any(asset.endswith("swagger-ui-dist/swagger-ui.css") for asset in assets)
    prefix = "/" + settings.STATIC_URL.lstrip("/")
    for asset in assets:
        assert asset.startswith(prefix), asset
        found = finders.find(asset.removeprefix(prefix))
        assert found is not None, f"{asset} is not a static file"
    assert '"/api/v1/schema/"' in html  # the page reads the schema from this server


def test_the_docs_page_accepts_a_token(client, admin_token):
    response = client.get("/api/v1/docs/", **auth(admin_token))
    assert response.status_code == 200
    assert b"swagger-ui" in response.content


def test_the_docs_page_sends_anonymous_visitors_to_the_login_page(client, db):
    response = client.get("/api/v1/docs/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/api/v1/docs/"


def test_the_docs_page_refuses_a_wrong_token(client, db):
    response = client.get("/api/v1/docs/", HTTP_AUTHORIZATION="Token not-a-real-token")
    assert response.status_code == 401
    assert b"swagger-ui" not in response.content

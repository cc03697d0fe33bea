"""Production serving with real processes: ``scripts/serve`` runs collectstatic and
gunicorn (config/gunicorn.py) on the production settings; whitenoise serves the admin's
and the Swagger UI's assets compressed and cached for good, the API answers, and the
access log never holds a credential."""

from __future__ import annotations

import gzip
import re
import shutil

import pytest

from tests.factories import make_token, make_user
from tests.support.gunicorn import Gunicorn

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

FOREVER = "max-age=315360000"


def _asset(page: str, pattern: str) -> str:
    found = re.search(pattern, page)
    assert found, f"no asset matching {pattern!r} in the page"
    return found.group(0)


def test_admin_assets_are_served_hashed_compressed_and_cached_for_good(gunicorn: Gunicorn):
    login = gunicorn.get("/admin/login/")
    assert login.status_code == 200
    # The manifest storage names each collected file by a hash of its content.
    css = _asset(login.text, r"/static/admin/css/base\.[0-9a-f]{12}\.css")

    compressed = gunicorn.get(css, headers={"Accept-Encoding": "gzip"}, stream=True)
    raw = compressed.raw.read()

    assert compressed.status_code == 200
    assert compressed.headers["Content-Encoding"] == "gzip"
    assert FOREVER in compressed.headers["Cache-Control"]
    assert "immutable" in compressed.headers["Cache-Control"]
    plain = gunicorn.get(css, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    assert gzip.decompress(raw) == plain.content
    assert b"body" in plain.content


def test_the_swagger_ui_page_and_its_assets_are_served(gunicorn: Gunicorn):
    token = make_token(make_user(is_superuser=True, is_staff=True))
    docs = gunicorn.get("/api/v1/docs/", headers={"Authorization": f"Token {token}"})
    assert docs.status_code == 200
    bundle = _asset(
        docs.text,
        r"/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle\.[0-9a-f]{12}\.js",
    )

    script = gunicorn.get(bundle)

    assert script.status_code == 200
    assert "javascript" in script.headers["Content-Type"]
    assert FOREVER in script.headers["Cache-Control"]
    assert len(script.content) > 100_000


def test_the_api_schema_and_an_api_request_answer_through_gunicorn(gunicorn: Gunicorn):
    token = make_token(make_user(is_superuser=True, is_staff=True))
    headers = {"Authorization": f"Token {token}", "Accept": "application/json"}

    schema = gunicorn.get("/api/v1/schema/?format=json", headers=headers)
    keys = gunicorn.get("/api/v1/kms/keys/", headers=headers)
    anonymous = gunicorn.get("/api/v1/kms/keys/")

    assert schema.status_code == 200
    assert schema.json()["openapi"].startswith("3.")
    assert "/api/v1/kms/keys/" in schema.json()["paths"]
    assert keys.status_code == 200
    assert keys.json()["count"] == 0
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "AuthFailure"


def test_the_access_log_never_holds_the_authorization_header_or_a_token_in_the_url(
    gunicorn: Gunicorn,
):
    token = make_token(make_user(is_superuser=True, is_staff=True))
    secret_in_url = "url-secret-" + "q" * 20
    secret_in_referrer = "referrer-secret-" + "r" * 20

    answer = gunicorn.get(
        f"/api/v1/kms/keys/?token={secret_in_url}",
        headers={
            "Authorization": f"Token {token}",
            "Referer": f"https://signet.example.com/?token={secret_in_referrer}",
        },
    )
    basic = gunicorn.get("/api/v1/kms/keys/", auth=("basic-user-name", "basic-password"))
    gunicorn.stop()  # flushes the log

    log = gunicorn.log_text()
    assert answer.status_code == 200 and basic.status_code == 401
    assert '"GET /api/v1/kms/keys/ HTTP/1.1" 200' in log
    for secret in (token, secret_in_url, secret_in_referrer, "basic-user-name", "basic-password"):
        assert secret not in log


def test_serve_collects_the_static_files_into_static_root(gunicorn: Gunicorn):
    manifest = gunicorn.static_root / "staticfiles.json"
    assert manifest.is_file()
    collected = manifest.read_text()
    assert "admin/css/base.css" in collected
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in collected
    assert list(gunicorn.static_root.glob("admin/css/base.*.css.gz"))


@pytest.mark.skipif(shutil.which("bash") is None, reason="scripts/serve is a bash script")
def test_a_malformed_worker_count_stops_serve_naming_the_variable(tmp_path):
    from tests.support.gunicorn import start_gunicorn

    with pytest.raises(AssertionError, match="SIGNET_WEB_WORKERS"):
        start_gunicorn(tmp_path, SIGNET_WEB_WORKERS="many")

"""The answers that carry an instance's webhook token: never cached, and behind a TLS
proxy their webhook URL and ``notifications:`` block use https://."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from registry import services
from registry.models import Instance
from tests.config.support import load_settings, production_example_env
from tests.factories import make_user
from tests.registry.conftest import make_instance

pytestmark = pytest.mark.django_db

HOST = "signet.example.com"
PROXIED_HTTPS = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_HOST": HOST}
WEBHOOK = f"https://{HOST}/api/v1/registry/instances/prod/events/"
NEW_INSTANCE = {
    "name": "prod",
    "backend_url": "http://127.0.0.1:5000",
    "default_domain": "registry.example.com",
}


@pytest.fixture
def behind_tls_proxy(settings):
    """The HTTPS settings of a Signet started with the production example environment."""
    names = ("SECURE_PROXY_SSL_HEADER", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS")
    values = load_settings(production_example_env(), *names)
    assert values["SECURE_PROXY_SSL_HEADER"] is not None, values
    settings.SECURE_PROXY_SSL_HEADER = tuple(values["SECURE_PROXY_SSL_HEADER"])
    settings.SECURE_SSL_REDIRECT = values["SECURE_SSL_REDIRECT"]
    settings.SECURE_HSTS_SECONDS = values["SECURE_HSTS_SECONDS"]


def _assert_https_config(body: dict) -> None:
    assert body["webhook_url"] == WEBHOOK
    assert f"url: {WEBHOOK}" in body["notifications_config"]
    assert "http://" not in body["notifications_config"]


def test_creating_an_instance_behind_a_tls_proxy_shows_https_urls(
    behind_tls_proxy, superuser_client
):
    response = superuser_client.post(
        "/api/v1/registry/instances/", NEW_INSTANCE, format="json", **PROXIED_HTTPS
    )
    assert response.status_code == 201, response.content
    _assert_https_config(response.json())
    assert response["Strict-Transport-Security"].startswith("max-age=")
    instance = Instance.objects.get(name="prod")
    assert services.authenticate_webhook(instance=instance, token=response.json()["webhook_token"])


def test_rotating_the_webhook_token_behind_a_tls_proxy_shows_https_urls(
    behind_tls_proxy, superuser_client
):
    instance, old_token = make_instance()
    response = superuser_client.post(
        f"/api/v1/registry/instances/{instance.pk}/rotate-webhook-token/", **PROXIED_HTTPS
    )
    assert response.status_code == 200, response.content
    _assert_https_config(response.json())
    instance.refresh_from_db()
    assert not services.authenticate_webhook(instance=instance, token=old_token)


def test_the_admin_token_page_behind_a_tls_proxy_shows_https_urls(behind_tls_proxy):
    client = Client()
    client.force_login(make_user("root", is_superuser=True, is_staff=True))
    instance, _ = make_instance()
    response = client.post(
        f"/admin/registry/instance/{instance.pk}/rotate-webhook-token/", **PROXIED_HTTPS
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert WEBHOOK in page
    assert not re.search(r"http://[^\s\"<]*/events/", page)
    assert "no-store" in response["Cache-Control"]


def test_a_plain_http_request_through_the_proxy_is_redirected_to_https(
    behind_tls_proxy, superuser_client
):
    response = superuser_client.post(
        "/api/v1/registry/instances/",
        NEW_INSTANCE,
        format="json",
        HTTP_X_FORWARDED_PROTO="http",
        HTTP_HOST=HOST,
    )
    assert response.status_code == 301
    assert response["Location"] == f"https://{HOST}/api/v1/registry/instances/"
    assert not Instance.objects.exists()


def test_creating_an_instance_answers_no_store(superuser_client):
    response = superuser_client.post("/api/v1/registry/instances/", NEW_INSTANCE, format="json")
    assert response.status_code == 201
    assert response.json()["webhook_token"]
    assert response["Cache-Control"] == "no-store"


def test_rotating_the_webhook_token_answers_no_store(superuser_client):
    instance, _ = make_instance()
    response = superuser_client.post(
        f"/api/v1/registry/instances/{instance.pk}/rotate-webhook-token/"
    )
    assert response.status_code == 200
    assert response.json()["webhook_token"]
    assert response["Cache-Control"] == "no-store"

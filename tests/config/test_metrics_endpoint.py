"""``GET /metrics``: only the metrics token scrapes it (compared in constant time);
without the setting the endpoint is off. Everything else answers in the API's error shape."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.config.support import minimal_production_env, settings_error
from tests.factories import make_token, make_user
from tests.support.metrics import Scrape

pytestmark = pytest.mark.django_db

TOKEN = "scrape-token-" + "s" * 32
URL = "/metrics"


@pytest.fixture(autouse=True)
def _metrics_token(settings) -> None:
    settings.SIGNET_METRICS_TOKEN = TOKEN


def test_the_metrics_token_scrapes_the_prometheus_text_format(client: Client):
    answer = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/plain; version=")
    assert answer["Cache-Control"] == "no-store"
    scrape = Scrape.parse(answer.content.decode())
    assert scrape.value("signet_signatures_pending") == 0
    assert scrape.value("signet_signatures_oldest_pending_age_seconds") == 0
    assert {
        "signet_webhook_events_total",
        "signet_signatures_pending",
        "signet_signatures_oldest_pending_age_seconds",
    } <= scrape.names()


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Token {TOKEN}", f"Bearer {TOKEN}x", "Bearer "],
    ids=["none", "wrong", "token-scheme", "longer", "empty"],
)
def test_a_request_without_the_metrics_token_answers_401(client: Client, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}

    answer = client.get(URL, **headers)

    assert answer.status_code == 401
    assert answer.json()["code"] == "AuthFailure"
    assert answer["WWW-Authenticate"] == 'Bearer realm="signet-metrics"'
    assert b"signet_" not in answer.content


def test_an_api_token_of_a_superuser_does_not_scrape(client: Client):
    token = make_token(make_user(is_superuser=True, is_staff=True))

    answer = client.get(URL, HTTP_AUTHORIZATION=f"Token {token}")

    assert answer.status_code == 401


def test_without_a_metrics_token_setting_the_endpoint_is_off(client: Client, settings):
    settings.SIGNET_METRICS_TOKEN = ""

    for authorization in ("Bearer ", "Bearer x", f"Bearer {TOKEN}"):
        answer = client.get(URL, HTTP_AUTHORIZATION=authorization)
        assert answer.status_code == 403
        assert answer.json()["code"] == "UnauthorizedOperation"
        assert "SIGNET_METRICS_TOKEN" in answer.json()["message"]


def test_only_get_is_allowed(client: Client):
    answer = client.post(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert answer.status_code == 405
    assert answer["Allow"] == "GET, HEAD"


def test_a_short_metrics_token_stops_the_process_naming_the_variable():
    error = settings_error(minimal_production_env(SIGNET_METRICS_TOKEN="short-token"))

    assert "SIGNET_METRICS_TOKEN must be at least 32 characters" in error

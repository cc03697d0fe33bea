"""While the database is unreachable, every API path answers a JSON 503 with Retry-After
(the registry re-delivers its notification, clients retry) and nothing recorded is lost.

A real outage, met by a live server's own threads and connections. On PostgreSQL the
server's connections go through a loopback TCP proxy (``tests/support/tcp_proxy.py``) that
is stopped (new connections refused, open ones cut) and restarted on the same port. On
SQLite, the other CI leg, the database file's path points into a directory that does not
exist for the same seconds ("unable to open database file").
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connections

from registry.models import RegistryEvent, Tag
from tests.factories import make_token, make_user
from tests.registry import events as ev
from tests.support.live_signet import signet_url
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.django_db(transaction=True)

OUTAGE_SECONDS = 3.0


@dataclass
class Outage:
    """Switches the live server's database off and on; ``secrets`` must never be shown."""

    begin: Callable[[], None]
    end: Callable[[], None]
    secrets: list[str] = field(default_factory=list)


def _through_proxy(settings_dict: dict[str, Any]) -> Iterator[Outage]:
    host, port = settings_dict["HOST"], settings_dict["PORT"]
    proxy = TcpProxy((host or "127.0.0.1", int(port or 5432)))
    proxy.start()
    settings_dict["HOST"], settings_dict["PORT"] = "127.0.0.1", str(proxy.port)
    try:
        yield Outage(
            begin=proxy.stop,
            end=proxy.start,
            secrets=[f":{proxy.port}", f"port {proxy.port}", settings_dict["NAME"]],
        )
    finally:
        settings_dict["HOST"], settings_dict["PORT"] = host, port
        proxy.stop()


def _moved_file(settings_dict: dict[str, Any], missing: Path) -> Iterator[Outage]:
    real = settings_dict["NAME"]

    def begin() -> None:
        settings_dict["NAME"] = str(missing / "db.sqlite3")

    def end() -> None:
        settings_dict["NAME"] = real

    try:
        yield Outage(begin=begin, end=end, secrets=[str(real), str(missing)])
    finally:
        end()


@pytest.fixture
def outage(signet: Any, instance_and_token: Any, tmp_path: Path) -> Iterator[Outage]:
    """The live server's database, ready to fail. The test's own connection is opened first
    and stays direct, so the test can read what was recorded at any time."""
    connection = connections["default"]
    connection.ensure_connection()
    # Shared by every thread's connection: the live server's request threads connect anew
    # for each request, with these settings.
    settings_dict = connection.settings_dict
    if connection.vendor == "postgresql":
        yield from _through_proxy(settings_dict)
    else:
        yield from _moved_file(settings_dict, tmp_path / "missing")


def test_during_an_outage_the_api_answers_json_503_and_each_delivery_is_recorded_once(
    signet, outage, instance_and_token, caplog
):
    instance, webhook_token = instance_and_token
    api_token = make_token(make_user(is_superuser=True, is_staff=True))
    base = signet_url(signet)

    def deliver(*events: dict[str, Any]) -> requests.Response:
        return requests.post(
            f"{base}/api/v1/registry/instances/{instance.name}/events/",
            data=json.dumps(ev.envelope(*events)),
            headers={"Authorization": f"Bearer {webhook_token}", "Content-Type": ev.EVENTS_TYPE},
            timeout=30,
        )

    def api(path: str) -> requests.Response:
        return requests.get(
            base + path, headers={"Authorization": f"Token {api_token}"}, timeout=30
        )

    before = ev.push("prod/app", "v1", ev.digest_of("before"))
    during = ev.push("prod/app", "v2", ev.digest_of("during"))
    assert deliver(before).status_code == 200
    assert api("/api/v1/registry/tags/").status_code == 200

    caplog.set_level(logging.INFO)
    outage.begin()
    try:
        refused = []
        deadline = time.monotonic() + OUTAGE_SECONDS
        while time.monotonic() < deadline:  # the registry retrying its delivery
            refused.append(deliver(during))
            time.sleep(0.3)
        refused += [
            api("/api/v1/registry/tags/"),
            api("/api/v1/registry/instances/"),
            api("/api/v1/signing/signatures/"),
            api("/api/v1/kms/keys/"),
        ]
        # The admin keeps Django's own error page.
        admin = requests.get(f"{base}/admin/", cookies={"sessionid": "x" * 32}, timeout=30)
    finally:
        outage.end()

    assert len(refused) >= 8
    for response in refused:
        assert response.status_code == 503, (response.url, response.status_code, response.text)
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["Retry-After"] == "5"
        assert response.json() == {
            "code": "InternalError.DatabaseUnavailable",
            "message": "The database is unavailable; retry after 5 seconds.",
        }
    assert admin.status_code == 500
    assert admin.headers["Content-Type"].startswith("text/html")

    redelivered = deliver(during)
    assert redelivered.status_code == 200, redelivered.text
    assert redelivered.json()["processed"] == 1
    assert deliver(during).json()["duplicates"] == 1
    assert api("/api/v1/registry/tags/").status_code == 200
    recorded = sorted(RegistryEvent.objects.values_list("event_id", flat=True))
    assert recorded == sorted([before["id"], during["id"]])
    assert sorted(Tag.objects.values_list("name", flat=True)) == ["v1", "v2"]

    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert any("database unreachable, answered 503" in r.getMessage() for r in errors)
    shown = [response.text for response in refused] + [r.getMessage() for r in errors]
    for secret in outage.secrets:
        assert not any(secret in text for text in shown), secret

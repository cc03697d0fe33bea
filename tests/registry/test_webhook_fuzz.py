"""Hostile notification bodies never make the webhook answer 5xx (on SQLite and PostgreSQL).

Hypothesis builds envelopes around the captured push event (``data/sample-push-event.json``,
the shape Distribution sends) and breaks them: fields replaced by other types, removed, or
set to hostile values (integers of thousands of digits, lone surrogates, NUL characters,
giant strings, deeply nested arrays, NaN), several events per delivery, index pushes whose
references carry hostile platforms. Each body is POSTed with the instance's token through
the whole Django stack, in a savepoint rolled back afterwards. Bounded and derandomized:
the same 200 bodies on every run, in a few seconds.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.registry import events as ev

pytestmark = pytest.mark.django_db

FUZZ_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
# A fixed seed, not ``derandomize``: the bodies do not change when the test's code does.
FUZZ_SEED = 20261130


@dataclass(frozen=True)
class HugeInteger:
    """An integer literal of ``digits`` digits, written into the body as is (``json.dumps``
    cannot write one past Python's 4,300-digit limit)."""

    digits: int


@dataclass(frozen=True)
class DeepNesting:
    """``depth`` nested JSON arrays."""

    depth: int


def dump(value: Any) -> str:
    """JSON text for ``value``, with the two markers above written as raw text."""
    if isinstance(value, HugeInteger):
        return "9" * value.digits
    if isinstance(value, DeepNesting):
        return "[" * value.depth + "]" * value.depth
    if isinstance(value, list):
        return "[" + ",".join(dump(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)  # ensure_ascii: a lone surrogate is sent as "\ud800"


# --- hostile values ------------------------------------------------------------------------

any_character = st.characters(exclude_categories=())  # surrogates and NUL included
hostile_text = st.one_of(
    st.text(any_character, max_size=30),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "push\x00", "linux\x00", "\u2028", " "]),
    st.builds(
        lambda c, n: c * n, st.sampled_from(["x", "é", "\x00", "\ud800"]), st.integers(0, 300_000)
    ),
    # Real values with one hostile character somewhere.
    st.builds(
        lambda word, at, char: word[:at] + char + word[at:],
        st.sampled_from(["push", "delete", "linux", "amd64", ev.OCI_MANIFEST, "prod-ns/web-app"]),
        st.integers(0, 30),
        st.sampled_from(["\x00", "\ud800", "\udc00", "\U0001f600"]),
    ),
)
hostile_number = st.one_of(
    st.integers(),
    st.sampled_from([-1, 0, 2**63 - 1, 2**63, 2**64, 10**4299]),
    st.builds(HugeInteger, st.integers(4_300, 20_000)),
    st.floats(allow_nan=True, allow_infinity=True),
)
hostile_scalar = st.one_of(
    st.none(),
    st.booleans(),
    hostile_number,
    hostile_text,
    st.builds(DeepNesting, st.sampled_from([50, 900, 5_000, 100_000])),
)
hostile_value = st.recursive(
    hostile_scalar,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=6,
)

# --- events around the real shape ----------------------------------------------------------

EVENT_FIELDS = [
    ("id",),
    ("action",),
    ("timestamp",),
    ("target",),
    ("target", "mediaType"),
    ("target", "size"),
    ("target", "digest"),
    ("target", "repository"),
    ("target", "tag"),
    ("target", "references"),
    ("target", "references", 0),
    ("target", "references", 0, "mediaType"),
    ("target", "references", 0, "size"),
    ("target", "references", 0, "digest"),
    ("target", "references", 0, "platform"),
    ("target", "references", 0, "platform", "os"),
    ("target", "references", 1, "platform", "architecture"),
    ("target", "references", 1, "platform", "variant"),
    ("request",),
    ("source",),
]
SAMPLE_EVENT = ev.sample_push()["events"][0]
MEDIA_TYPES = [
    ev.OCI_MANIFEST,
    ev.OCI_INDEX,
    ev.OCTET_STREAM,
    "application/vnd.oci.image.config.v1+json",
]


def _set(document: Any, path: tuple[Any, ...], value: Any, *, remove: bool) -> None:
    """Set (or remove) ``path`` in ``document`` if its parents are still containers."""
    *parents, last = path
    for key in parents:
        try:
            document = document[key]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(document, dict) and isinstance(last, str):
        if remove:
            document.pop(last, None)
        else:
            document[last] = value
    elif isinstance(document, list) and isinstance(last, int) and last < len(document):
        document[last] = value


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    event = copy.deepcopy(SAMPLE_EVENT)
    event["id"] = draw(st.one_of(st.uuids().map(str), st.just(SAMPLE_EVENT["id"])))
    event["action"] = draw(st.sampled_from(["push", "push", "delete", "pull", "mount"]))
    target = event["target"]
    target["mediaType"] = draw(st.sampled_from(MEDIA_TYPES))
    target["digest"] = ev.digest_of(draw(st.text(max_size=3)))
    if target["mediaType"] == ev.OCI_INDEX:  # an index push whose references reach the database
        target["references"] = [
            {
                "mediaType": ev.OCI_MANIFEST,
                "digest": ev.digest_of(arch),
                "size": 401,
                "platform": {"os": "linux", "architecture": arch},
            }
            for arch in ("amd64", "arm64")
        ]
    for path in draw(st.lists(st.sampled_from(EVENT_FIELDS), max_size=3, unique=True)):
        value = draw(st.one_of(hostile_text, hostile_value))
        _set(event, path, value, remove=draw(st.booleans()) and draw(st.booleans()))
    return event


@st.composite
def bodies(draw: st.DrawFn) -> str:
    envelope: Any = {"events": draw(st.lists(events(), min_size=1, max_size=3))}
    if draw(st.integers(0, 9)) == 0:  # now and then, the envelope itself is broken
        envelope = draw(st.one_of(hostile_value, st.fixed_dictionaries({"events": hostile_value})))
    return dump(envelope)


# --- the property --------------------------------------------------------------------------


@pytest.fixture
def deliver(instance, webhook_token):
    """POST a body as the registry would; the response, with anything written rolled back."""
    client = Client(raise_request_exception=False)
    url = f"/api/v1/registry/instances/{instance.name}/events/"
    headers = {"Authorization": f"Bearer {webhook_token}"}

    def post(body: str) -> Any:
        with transaction.atomic():
            response = client.post(url, data=body, content_type=ev.EVENTS_TYPE, headers=headers)
            transaction.set_rollback(True)
        return response

    return post


@seed(FUZZ_SEED)
@given(body=bodies())
@FUZZ_SETTINGS
def test_no_hostile_notification_body_gets_a_server_error(deliver, body):
    response = deliver(body)

    assert response.status_code < 500, (response.status_code, body[:300])
    assert response["Content-Type"] == "application/json"
    answer = response.json()
    if response.status_code != 200:
        assert answer["code"] and answer["message"]

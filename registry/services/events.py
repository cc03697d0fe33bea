"""Parsing what the registry sends: notification envelopes (the webhook) and the
descriptors of an image index. Parsing validates everything before anything is written;
``ValidationFailed`` names the first bad field (``events[2].target.digest``).

Every string an event carries is checked once, after its fields are read
(``_refuse_unstorable_text``): no NUL character (PostgreSQL text cannot hold one) and no
lone surrogate such as ``\\ud800`` (valid JSON, but not UTF-8, so no database driver can
write it). Integer literals longer than any count Signet stores are never converted
(``parse_integer``): the field holding one is refused like any other non-count.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from django.utils import timezone

from config.errors import ValidationFailed
from registry.reference import (
    DIGEST_RE,
    RECORDED_MANIFEST_TYPES,
    REPOSITORY_MAX_LENGTH,
    TAG_RE,
    is_valid_repository_name,
)

WEBHOOK_CONTENT_TYPES = ("application/vnd.docker.distribution.events.v1+json", "application/json")
MAX_EVENT_ID_LENGTH = 100
MAX_ACTION_LENGTH = 20
MAX_MEDIA_TYPE_LENGTH = 255
# 2**63 has 19 digits: a longer integer literal can be no count Signet stores.
MAX_INTEGER_DIGITS = 20
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Reference:
    """A descriptor of a child manifest (an index's entry, or an event's reference)."""

    digest: str
    media_type: str = ""
    size: int | None = None
    platform: str = ""


@dataclass(frozen=True)
class Event:
    """One validated notification."""

    index: int
    id: str
    action: str
    repository: str
    digest: str = ""
    tag: str = ""
    media_type: str = ""
    size: int | None = None
    timestamp: datetime | None = None
    references: tuple[Reference, ...] = ()

    @property
    def is_manifest(self) -> bool:
        return self.media_type in RECORDED_MANIFEST_TYPES


@dataclass(frozen=True)
class _Target:
    """An event's ``target``, validated."""

    repository: str
    media_type: str
    tag: str
    size: int | None
    digest: str


@dataclass(frozen=True)
class OversizedInteger:
    """An integer literal of more than ``MAX_INTEGER_DIGITS`` digits, left unconverted
    (Python refuses to convert one past 4,300 digits with a ValueError)."""

    digits: int


def parse_integer(literal: str) -> int | OversizedInteger:
    """``json.loads(text, parse_int=parse_integer)``: integers, except oversized ones."""
    digits = len(literal.lstrip("-"))
    return OversizedInteger(digits) if digits > MAX_INTEGER_DIGITS else int(literal)


def fail(path: str, message: str) -> NoReturn:
    raise ValidationFailed(f"{path}: {message}", fields={path: [message]})


def _is_count(value: Any) -> bool:
    # Below 2**63: what a BigIntegerField holds on every database.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None."""
    if "\x00" in value:
        return "must not contain NUL characters."
    if not value.isascii() and _LONE_SURROGATE.search(value):
        return "must be Unicode text without lone surrogates (such as \\ud800)."
    return None


def _storable(value: str) -> str:
    """``value``, or "" if it cannot be stored (for descriptors Signet only displays)."""
    return "" if _text_problem(value) else value


def _platform(descriptor: Mapping[str, Any]) -> str:
    platform = descriptor.get("platform")
    if not isinstance(platform, Mapping):
        return ""
    parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
    return "/".join(str(part) for part in parts if isinstance(part, str) and part)[:100]


# --- an event, part by part -----------------------------------------------------------------


def _event_id(where: str, raw: Mapping[str, Any]) -> str:
    event_id = raw.get("id")
    if not isinstance(event_id, str) or not event_id.strip():
        fail(f"{where}.id", "is required (a non-empty string).")
    if len(event_id) > MAX_EVENT_ID_LENGTH:
        fail(f"{where}.id", f"must be at most {MAX_EVENT_ID_LENGTH} characters.")
    return event_id


def _action(where: str, raw: Mapping[str, Any]) -> str:
    action = raw.get("action")
    if not isinstance(action, str) or not action or len(action) > MAX_ACTION_LENGTH:
        fail(f"{where}.action", "is required (push, pull, mount or delete).")
    return action


def _repository(where: str, target: Mapping[str, Any]) -> str:
    repository = target.get("repository")
    if not is_valid_repository_name(repository):
        fail(
            f"{where}.target.repository",
            "is not a valid repository name (lowercase path components separated by '/', "
            f"at most {REPOSITORY_MAX_LENGTH} characters).",
        )
    return repository


def _descriptor_fields(where: str, target: Mapping[str, Any]) -> tuple[str, Any, int | None]:
    """The target's media type, tag (as sent: validated when there is one) and size."""
    media_type = target.get("mediaType", "")
    if not isinstance(media_type, str) or len(media_type) > MAX_MEDIA_TYPE_LENGTH:
        fail(f"{where}.target.mediaType", "must be a string of at most 255 characters.")
    tag = target.get("tag", "")
    if tag and (not isinstance(tag, str) or not TAG_RE.fullmatch(tag)):
        fail(f"{where}.target.tag", "is not a valid tag.")
    size = target.get("size")
    if size is not None and not _is_count(size):
        fail(f"{where}.target.size", "must be a non-negative integer.")
    return media_type, tag, size


def _digest(where: str, target: Mapping[str, Any], *, action: str, media_type: str) -> Any:
    """The target's digest, as sent; checked against the grammar only for the events
    Signet acts on (deletes and manifest pushes), which need one."""
    digest = target.get("digest", "")
    acted_on = action == "delete" or (action == "push" and media_type in RECORDED_MANIFEST_TYPES)
    if digest and not isinstance(digest, str):
        fail(f"{where}.target.digest", "must be a string.")
    if acted_on and digest and not DIGEST_RE.fullmatch(digest):
        fail(f"{where}.target.digest", "is not a valid digest (sha256:<64 lowercase hex>).")
    if action == "push" and acted_on and not digest:
        fail(f"{where}.target.digest", "is required for a manifest push.")
    return digest


def _target(where: str, target: Mapping[str, Any], action: str) -> _Target:
    repository = _repository(where, target)
    media_type, tag, size = _descriptor_fields(where, target)
    digest = _digest(where, target, action=action, media_type=media_type)
    if action == "delete" and not digest and not tag:
        fail(f"{where}.target", "a delete event names a digest or a tag.")
    return _Target(
        repository=repository, media_type=media_type, tag=tag or "", size=size, digest=digest or ""
    )


def _references(path: str, raw_references: Any) -> tuple[Reference, ...]:
    if raw_references is None:
        return ()
    if not isinstance(raw_references, list):
        fail(path, "must be a list.")
    references = []
    for position, descriptor in enumerate(raw_references):
        where = f"{path}[{position}]"
        if not isinstance(descriptor, Mapping):
            fail(where, "must be a JSON object.")
        child = descriptor.get("digest")
        if not isinstance(child, str) or not DIGEST_RE.fullmatch(child):
            fail(f"{where}.digest", "is not a valid digest (sha256:<64 lowercase hex>).")
        child_type = descriptor.get("mediaType", "")
        child_size = descriptor.get("size")
        references.append(
            Reference(
                digest=child,
                media_type=child_type[:255] if isinstance(child_type, str) else "",
                size=child_size if _is_count(child_size) else None,
                platform=_platform(descriptor),
            )
        )
    return tuple(references)


def _timestamp(path: str, raw_timestamp: Any) -> datetime | None:
    if raw_timestamp is None:
        return None
    try:
        timestamp = datetime.fromisoformat(raw_timestamp)
    except (TypeError, ValueError):
        fail(path, "is not an RFC 3339 time.")
    if timezone.is_naive(timestamp):
        fail(path, "needs a time zone (RFC 3339).")
    try:
        timestamp.astimezone(UTC)
    except OverflowError:
        fail(path, "is out of range.")
    return timestamp


def _refuse_unstorable_text(where: str, event: Event) -> None:
    """Every string of ``event`` is written to the database (the event row keeps even an
    ignored event's action): refuse one no database can hold, naming its field."""
    fields = [
        ("id", event.id),
        ("action", event.action),
        ("target.repository", event.repository),
        ("target.digest", event.digest),
        ("target.tag", event.tag),
        ("target.mediaType", event.media_type),
    ]
    for n, reference in enumerate(event.references):
        fields += [
            (f"target.references[{n}].digest", reference.digest),
            (f"target.references[{n}].mediaType", reference.media_type),
            (f"target.references[{n}].platform", reference.platform),
        ]
    for name, value in fields:
        problem = _text_problem(value)
        if problem:
            fail(f"{where}.{name}", problem)


def _parse_event(index: int, raw: Any) -> Event:
    where = f"events[{index}]"
    if not isinstance(raw, Mapping):
        fail(where, "each event must be a JSON object.")
    event_id = _event_id(where, raw)
    action = _action(where, raw)
    raw_target = raw.get("target")
    if not isinstance(raw_target, Mapping):
        fail(f"{where}.target", "is required (a JSON object).")
    target = _target(where, raw_target, action)
    references = _references(f"{where}.target.references", raw_target.get("references"))
    timestamp = _timestamp(f"{where}.timestamp", raw.get("timestamp"))
    event = Event(
        index=index,
        id=event_id,
        action=action,
        repository=target.repository,
        digest=target.digest,
        tag=target.tag,
        media_type=target.media_type,
        size=target.size,
        timestamp=timestamp,
        references=references,
    )
    _refuse_unstorable_text(where, event)
    return event


def parse_envelope(envelope: Any) -> list[Event]:
    """Validate a whole notification envelope; ValidationFailed names the first bad field."""
    if not isinstance(envelope, Mapping):
        fail("events", 'the body must be a JSON object with an "events" list.')
    events = envelope.get("events")
    if not isinstance(events, list):
        fail("events", 'is required: the body must be a JSON object with an "events" list.')
    return [_parse_event(index, raw) for index, raw in enumerate(events)]


# --- image index documents ------------------------------------------------------------------


def parse_index_children(document: Any) -> tuple[Reference, ...]:
    """The child manifests an image index document lists (entries without a valid digest are
    left out)."""
    children = []
    manifests = document.get("manifests") if isinstance(document, Mapping) else None
    for descriptor in manifests if isinstance(manifests, list) else []:
        child = descriptor.get("digest") if isinstance(descriptor, Mapping) else None
        if isinstance(child, str) and DIGEST_RE.fullmatch(child):
            size = descriptor.get("size")
            children.append(
                Reference(
                    digest=child,
                    media_type=_storable(str(descriptor.get("mediaType") or "")[:255]),
                    size=size if _is_count(size) else None,
                    platform=_storable(_platform(descriptor)),
                )
            )
    return tuple(children)

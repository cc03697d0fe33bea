"""Build Distribution notification bodies for tests (shaped like the captured samples)."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCTET_STREAM = "application/octet-stream"
EVENTS_TYPE = "application/vnd.docker.distribution.events.v1+json"
DATA = Path(__file__).parent / "data"

_clock = itertools.count(1)
_EPOCH = datetime(2026, 11, 28, 13, 0, tzinfo=UTC)


def sample_push() -> dict[str, Any]:
    """The captured body of a manifest pushed by tag (prod-ns/web-app:v1.2.3)."""
    return json.loads((DATA / "sample-push-event.json").read_text())


def sample_event(kind: str) -> dict[str, Any]:
    """One captured event by its kind, e.g. ``"push PUT blob no-tag"``."""
    return copy.deepcopy(json.loads((DATA / "sample-other-events.json").read_text())[kind])


def digest_of(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def event(
    action: str,
    repository: str,
    *,
    digest: str | None = None,
    tag: str | None = None,
    media_type: str | None = OCI_MANIFEST,
    size: int | None = 401,
    references: list[dict[str, Any]] | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    target: dict[str, Any] = {"repository": repository}
    if media_type is not None:
        target["mediaType"] = media_type
    if digest is not None:
        target["digest"] = digest
    if size is not None and media_type is not None:
        target["size"] = size
        target["length"] = size
    if tag is not None:
        target["tag"] = tag
    if references is not None:
        target["references"] = references
    # Strictly increasing times, formatted like Distribution's (nanoseconds, "Z").
    moment = _EPOCH + timedelta(seconds=next(_clock))
    return {
        "id": event_id or str(uuid.uuid4()),
        "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S") + ".077299778Z",
        "action": action,
        "target": target,
        "request": {"method": "PUT", "useragent": "tests"},
        "actor": {},
        "source": {"addr": "tests:5000"},
    }


def push(repository: str, tag: str | None, digest: str, **kwargs: Any) -> dict[str, Any]:
    return event("push", repository, digest=digest, tag=tag, **kwargs)


def push_index(
    repository: str, tag: str | None, digest: str, children: list[str], **kwargs: Any
) -> dict[str, Any]:
    references = [
        {
            "mediaType": OCI_MANIFEST,
            "digest": child,
            "size": 401,
            "platform": {"os": "linux", "architecture": arch},
        }
        for child, arch in zip(children, ["amd64", "arm64", "s390x", "ppc64le"], strict=False)
    ]
    return event(
        "push",
        repository,
        digest=digest,
        tag=tag,
        media_type=OCI_INDEX,
        references=references,
        **kwargs,
    )


def delete_digest(repository: str, digest: str) -> dict[str, Any]:
    return event("delete", repository, digest=digest, media_type=None)


def delete_tag(repository: str, tag: str) -> dict[str, Any]:
    return event("delete", repository, tag=tag, media_type=None)


def envelope(*events: dict[str, Any]) -> dict[str, Any]:
    return {"events": list(events)}

"""What the registry client answers with: manifests as the registry stores them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ManifestRef:
    digest: str
    media_type: str
    size: int


@dataclass(frozen=True)
class Manifest(ManifestRef):
    content: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.content)

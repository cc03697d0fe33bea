"""A bounded, thread-safe, in-process cache of opened private keys.

An entry is valid only for the exact sealed bytes it was opened from, so a
rotation or any change of material misses the cache; state is checked against
the database row on every use, and state changes evict explicitly.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from kms.crypto import PrivateKey


class PrivateKeyCache:
    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[bytes, PrivateKey]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key_id: str, sealed: bytes) -> PrivateKey | None:
        with self._lock:
            entry = self._entries.get(key_id)
            if entry is None or entry[0] != sealed:
                self.misses += 1
                return None
            self._entries.move_to_end(key_id)
            self.hits += 1
            return entry[1]

    def put(self, key_id: str, sealed: bytes, key: PrivateKey) -> None:
        if self._max_entries <= 0:
            return
        with self._lock:
            self._entries[key_id] = (sealed, key)
            self._entries.move_to_end(key_id)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def evict(self, key_id: str) -> None:
        with self._lock:
            self._entries.pop(key_id, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

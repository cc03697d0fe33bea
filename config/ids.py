"""Telling a database id from other input (names, junk) without a 500."""

from __future__ import annotations

from typing import Any


def is_id(value: Any) -> bool:
    """An ASCII decimal that fits a 64-bit integer column (``"²".isdigit()`` is true too)."""
    return isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18

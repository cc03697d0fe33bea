"""What every admin form shares: limits the server enforces, never the browser.

Django puts ``maxlength`` on text inputs, and a browser then cuts a longer value
silently (a pasted 61-character alias was saved as 60 characters). Without it the value
reaches the server, whose ``MaxLengthValidator`` refuses it naming the limit ("Ensure
this value has at most 60 characters (it has 61)."); the limit is in the field's help
text up front.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def server_side_limits(fields: Mapping[str, Any]) -> None:
    """Drop the browser's ``maxlength`` from every field's widget (the validators stay)."""
    for field in fields.values():
        field.widget.attrs.pop("maxlength", None)

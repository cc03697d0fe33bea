"""The API's JSON parser: a body nested too deeply is bad input (400), not a crash.

``json.loads`` recurses once per nesting level; fifty thousand ``[`` exhaust Python's
stack and raise ``RecursionError``, which DRF's parser lets through as a 500. The
registry webhook (a plain Django view) answers the same message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class SafeJSONParser(JSONParser):
    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None

"""Every API list pages with ``?limit=`` and ``?offset=``, both bounded.

DRF's stock ``LimitOffsetPagination`` passes any integer to the database (a 21-digit
limit overflows the SQL integer and answers 500) and silently ignores garbage. Here a
value outside its range, or not a plain decimal, answers 400 naming the parameter.
"""

from __future__ import annotations

from typing import Any, TypeVar

from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

from config.errors import ValidationFailed

MAX_LIMIT = 1000
# Far beyond any list here, well inside every database's integer range.
MAX_OFFSET = 2**31 - 1

# The limit's default is DRF's PAGE_SIZE, None when unset (no pagination); the offset's is 0.
_Default = TypeVar("_Default", bound=int | None)


def _bounded(
    request: Request, name: str, *, default: _Default, low: int, high: int
) -> int | _Default:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    if raw.isascii() and raw.isdigit() and len(raw) <= len(str(high)) and low <= int(raw) <= high:
        return int(raw)
    raise ValidationFailed(
        f"Invalid {name}: expected a whole number from {low} to {high}, got {raw[:40]!r}.",
        fields={name: [f"Expected a whole number from {low} to {high}."]},
    )


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    max_limit = MAX_LIMIT

    def get_limit(self, request: Request) -> int | None:
        return _bounded(
            request, self.limit_query_param, default=self.default_limit, low=1, high=MAX_LIMIT
        )

    def get_offset(self, request: Request) -> int:
        return _bounded(request, self.offset_query_param, default=0, low=0, high=MAX_OFFSET)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": MAX_LIMIT},
            self.offset_query_param: {"minimum": 0, "maximum": MAX_OFFSET},
        }
        for parameter in parameters:
            parameter["schema"] = {**parameter["schema"], **bounds.get(parameter["name"], {})}
        return parameters

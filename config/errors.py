"""The base of every domain error raised by Signet's services.

Services raise subclasses; the API exception handler (``config.api``) and the
admin turn them into responses and messages in one place each.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """An expected failure with a stable, programmable code."""

    code: str = "InternalError"
    http_status: int = 400
    default_message: str = "The request could not be completed."

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.default_message
        self.details = details
        super().__init__(self.message)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class ValidationFailed(DomainError):
    """Input that breaks a rule; ``fields`` maps field names to messages."""

    code = "InvalidParameterValue"
    http_status = 400

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}

    def as_dict(self) -> dict[str, Any]:
        body = super().as_dict()
        if self.fields:
            body["fields"] = self.fields
        return body

"""The three response envelopes the seeds use, in one place.

Each API view names its envelope; successful answers are wrapped by the base view and
errors by the exception handler, so no view builds an envelope by hand.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone


class Envelope:
    """Seeds 000, 002, 003: ``{"code": 0, "message": "success", "content": ...}``."""

    def success(self, data: Any, status: int, message: str | None = None) -> Any:
        return {"code": 0, "message": message or "success", "content": data}

    def error(self, status: int, message: str, errors: dict[str, Any]) -> Any:
        return {"code": status, "message": message, "errors": errors}


class BareEnvelope(Envelope):
    """Seed 001: objects and lists are returned as they are."""

    def success(self, data: Any, status: int, message: str | None = None) -> Any:
        return data


class MaintenanceEnvelope(Envelope):
    """Seed 004: ``{"status": {"code", "message"}, "responseCreated", "response"}``."""

    def success(self, data: Any, status: int, message: str | None = None) -> Any:
        return {
            "status": {"code": status, "message": message or "success"},
            "responseCreated": timezone.now().isoformat().replace("+00:00", "Z"),
            "response": data,
        }

    def error(self, status: int, message: str, errors: dict[str, Any]) -> Any:
        body = self.success(None, status, message)
        body["errors"] = errors
        return body


DEFAULT_ENVELOPE = Envelope()

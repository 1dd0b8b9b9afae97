"""The three response envelopes the seeds use, in one place.

Each API view names its envelope; successful answers are wrapped by the base view and
errors by the exception handler, so no view builds an envelope by hand.

Every error body, in every envelope, has the seeds' fields and one more, ``error_code``: a
short snake_case word saying why (``not_found``, ``invalid_transition``, ``stale_version``)
for programs to branch on, while ``message`` and ``errors`` are for people (docs/errors.md).
It was added next to the seeds' fields, so clients written against them see no change.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from config import timestamps

ERROR_ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "code": {"type": "integer", "description": "The HTTP status."},
        "message": {"type": "string", "description": "One line: the first field at fault and why."},
        "errors": {
            "type": "object",
            "additionalProperties": True,
            "description": "Each field at fault with its reasons.",
        },
        "error_code": {
            "type": "string",
            "pattern": "^[a-z][a-z0-9_]*$",
            "description": "Why, for programs: a short snake_case word such as not_found, invalid, "
            "invalid_transition or stale_version (docs/errors.md). The message may be reworded; "
            "this stays.",
        },
    },
    "required": ["code", "message", "errors", "error_code"],
}


class Envelope:
    """Seeds 000, 002, 003: ``{"code": 0, "message": "success", "content": ...}``.

    ``success_schema`` and ``error_schema`` describe the same shapes in OpenAPI, so the
    published schema (``config.api.schema``) says what this class sends.
    """

    #: The name of the error body's component in the OpenAPI document.
    error_component = "ErrorEnvelope"

    def success(self, data: Any, status: int, message: str | None = None) -> Any:
        return {"code": 0, "message": message or "success", "content": data}

    def error(self, status: int, message: str, errors: dict[str, Any], error_code: str) -> Any:
        return {"code": status, "message": message, "errors": errors, "error_code": error_code}

    def success_schema(self, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "code": {"type": "integer", "minimum": 0, "maximum": 0},
                "message": {"type": "string"},
                "content": data,
            },
            "required": ["code", "message", "content"],
        }

    def error_schema(self) -> dict[str, Any]:
        return ERROR_ENVELOPE_SCHEMA


class BareEnvelope(Envelope):
    """Seed 001: objects and lists are returned as they are."""

    def success(self, data: Any, status: int, message: str | None = None) -> Any:
        return data

    def success_schema(self, data: dict[str, Any]) -> dict[str, Any]:
        return data


class MaintenanceEnvelope(Envelope):
    """Seed 004: ``{"status": {"code", "message"}, "responseCreated", "response"}``."""

    def success(self, data: Any, status: int, message: str | None = None) -> Any:
        return {
            "status": {"code": status, "message": message or "success"},
            "responseCreated": timestamps.format(timezone.now()),
            "response": data,
        }

    error_component = "MaintenanceErrorEnvelope"

    def error(self, status: int, message: str, errors: dict[str, Any], error_code: str) -> Any:
        body = self.success(None, status, message)
        body["errors"] = errors
        body["error_code"] = error_code
        return body

    def success_schema(self, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "status": {
                    "type": "object",
                    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
                    "required": ["code", "message"],
                },
                "responseCreated": {"type": "string", "format": "date-time"},
                "response": data,
            },
            "required": ["status", "responseCreated", "response"],
        }

    def error_schema(self) -> dict[str, Any]:
        schema = self.success_schema({"type": "object", "nullable": True, "description": "null"})
        for name in ("errors", "error_code"):
            schema["properties"][name] = ERROR_ENVELOPE_SCHEMA["properties"][name]
        schema["required"] = [*schema["required"], "errors", "error_code"]
        return schema


DEFAULT_ENVELOPE = Envelope()

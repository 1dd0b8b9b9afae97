"""The three response envelopes the seeds use, in one place.

Each API view names its envelope; successful answers are wrapped by the base view and
errors by the exception handler, so no view builds an envelope by hand.
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
    },
    "required": ["code", "message", "errors"],
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

    def error(self, status: int, message: str, errors: dict[str, Any]) -> Any:
        return {"code": status, "message": message, "errors": errors}

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

    def error(self, status: int, message: str, errors: dict[str, Any]) -> Any:
        body = self.success(None, status, message)
        body["errors"] = errors
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
        schema["properties"]["errors"] = ERROR_ENVELOPE_SCHEMA["properties"]["errors"]
        schema["required"] = [*schema["required"], "errors"]
        return schema


DEFAULT_ENVELOPE = Envelope()

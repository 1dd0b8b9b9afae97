"""The inbox in the OpenAPI document.

The inbox is a plain Django view (see ``commands.inbox``), which drf-spectacular cannot
introspect, so its path is described here and added by a postprocessing hook.
"""

from __future__ import annotations

from typing import Any

from config.api.envelopes import ERROR_ENVELOPE_SCHEMA
from config.api.schema import ERROR_DESCRIPTIONS
from inventory.device_rows import DEVICE_ID_PATTERN


def _error() -> dict[str, Any]:
    return {"$ref": "#/components/schemas/ErrorEnvelope"}


def add_inbox_path(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("ErrorEnvelope", ERROR_ENVELOPE_SCHEMA)
    command = {"$ref": "#/components/schemas/CommandStatus"}
    page = {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "next": {"type": "string", "nullable": True},
            "previous": {"type": "string", "nullable": True},
            "results": {"type": "array", "items": command},
            "next_poll_seconds": {"type": "integer", "description": "When to poll next (with jitter)."},
        },
        "required": ["count", "next", "previous", "results", "next_poll_seconds"],
    }
    json_body = {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "content": page},
                "required": ["code", "message", "content"],
            }
        }
    }
    error = {"application/json": {"schema": _error()}}
    result.setdefault("paths", {})["/v2/command-inbox/"] = {
        "get": {
            "operationId": "v2_command_inbox_list",
            "summary": "Get the commands a device should run now",
            "description": (
                "Hands out the device's queued commands (highest priority first, then oldest) and "
                "moves them to Command Initiated. A command not acknowledged within the redelivery "
                "timeout is handed out again, up to a limit. Send the last ETag as If-None-Match: "
                "with nothing new the answer is 304."
            ),
            "tags": ["commands"],
            "parameters": [
                {
                    "name": "device_id",
                    "in": "query",
                    "required": True,
                    # What a device id can be (inventory.device_rows.DEVICE_ID_RE): an empty
                    # one is a 400, so the schema says so.
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 128,
                        "pattern": DEVICE_ID_PATTERN,
                    },
                },
                {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
            ],
            "security": [{"bearerAuth": []}],
            "responses": {
                "200": {"description": "The commands handed out.", "content": json_body},
                "304": {"description": "Nothing new since the ETag given in If-None-Match."},
                "400": {"description": "device_id missing or not visible to the caller.", "content": error},
                "401": {"description": "Missing, unknown or revoked token.", "content": error},
                "405": {"description": "Any method but GET.", "content": error},
                "429": {"description": ERROR_DESCRIPTIONS["429"], "content": error},
                "503": {"description": ERROR_DESCRIPTIONS["503"], "content": error},
            },
        }
    }
    return result

"""OpenAPI: the bearer scheme, documented once for every endpoint."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "config.api.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`dok_…`, role admin, operator or viewer) or a device token "
            "(`ddt_…`, which reaches only that device's inbox and command statuses).",
        }

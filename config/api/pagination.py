"""Limit/offset paging: default 20, at most ``API_PAGE_SIZE_MAX`` (1000)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

MAX_OFFSET = 2**63 - 1


def _parse(request: Request, name: str, minimum: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({name: [f"must be an integer, got {raw[:40]!r}"]}) from None
    if value < minimum or value > MAX_OFFSET:
        raise ValidationError({name: [f"must be between {minimum} and {MAX_OFFSET}"]})
    return value


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """Unlike DRF's default, a malformed ``limit`` or ``offset`` is a 400, not silently ignored."""

    default_limit = 20

    @property
    def max_limit(self) -> int:  # type: ignore[override]
        return int(settings.API_PAGE_SIZE_MAX)

    def get_limit(self, request: Request) -> int:
        limit = _parse(request, self.limit_query_param, 1)
        return self.default_limit if limit is None else min(limit, self.max_limit)

    def get_offset(self, request: Request) -> int:
        return _parse(request, self.offset_query_param, 0) or 0

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return super().get_paginated_response_schema(schema)

"""Limit/offset paging: default 20, at most ``API_PAGE_SIZE_MAX`` (1000); integral numbers only."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from django.conf import settings
from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

MAX_OFFSET = 2**63 - 1
#: Seed 002 types ``limit`` and ``offset`` as numbers, so a client may send ten as ``10.0``
#: (a float formatted by Python, say). Plain decimal notation only: no exponent (``1e3``), no
#: ``_`` separators, hex, ``NaN`` or ``Infinity``, which Python's int() or Decimal() would take.
_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")


def _parse(request: Request, name: str, minimum: int) -> int | None:
    """The parameter as an int; anything but an integral number in range is a 400 naming it.

    An empty value is refused like any other non-number (the schema says integer); the bounds
    are checked on the Decimal, before ``int()`` could build a number of a billion digits.
    """
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not _NUMBER.fullmatch(raw):
        raise ValidationError({name: [f"must be an integer, got {raw[:40]!r}"]})
    value = Decimal(raw)
    if value != value.to_integral_value():
        raise ValidationError({name: [f"must be a whole number, got {raw[:40]!r}"]})
    if value < minimum or value > MAX_OFFSET:
        raise ValidationError({name: [f"must be between {minimum} and {MAX_OFFSET}, got {raw[:40]!r}"]})
    return int(value)


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

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        """DRF's two parameters with the bounds :func:`_parse` holds them to, so that the schema
        and the answers agree (``limit=0`` is a 400, and the schema says so)."""
        bounds = {self.limit_query_param: 1, self.offset_query_param: 0}
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            minimum = bounds.get(parameter["name"])
            if minimum is not None:
                parameter["schema"] = {"type": "integer", "minimum": minimum, "maximum": MAX_OFFSET}
            if parameter["name"] == self.limit_query_param:
                parameter["description"] = (
                    f"Number of results to return per page (default {self.default_limit}); "
                    "more than API_PAGE_SIZE_MAX (1000) is taken as that maximum."
                )
        return parameters

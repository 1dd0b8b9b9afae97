"""Limit/offset paging: default 20, at most ``API_PAGE_SIZE_MAX`` (1000); integral numbers only.

Lists over millions of rows stay fast (issue 17):

- ``offset`` goes up to ``API_MAX_OFFSET`` (1,000,000; deeper is a 400 naming ``offset``);
  a page reads its keys alone first (an index-only scan) and then only those rows, instead
  of reading and dropping every row before them.
- Lists ordered by key (command statuses, devices) also page by ``cursor`` (keyset): the
  page after a given key, in constant time at any depth, and stable while rows are added.
  Each such page gives ``next_cursor``; past ``API_MAX_OFFSET`` ``next`` carries it too.
- ``count`` is exact up to ``COUNT_ESTIMATE_THRESHOLD`` (100,000) rows; beyond, it is the
  planner's estimate and ``count_estimated`` is true.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import OrderedDict
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import QuerySet
from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

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


_CURSOR_PREFIX = "k1:"


def encode_cursor(key: int) -> str:
    """The opaque ``cursor`` of the page after the row with primary key ``key``."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{key}".encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> int:
    """The key a ``cursor`` stands for; anything this server did not make is a 400 naming it."""
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    digits = text.removeprefix(_CURSOR_PREFIX)
    if not text.startswith(_CURSOR_PREFIX) or not re.fullmatch(r"[0-9]{1,19}", digits):
        raise ValidationError({"cursor": [f"is not a cursor this list gave, got {raw[:40]!r}"]})
    return int(digits)


def estimated_rows(queryset: QuerySet[Any]) -> int:
    """The planner's estimate of the rows of ``queryset`` (``EXPLAIN``, no rows read)."""
    try:
        sql, params = queryset.order_by().values("pk").query.sql_with_params()
    except EmptyResultSet:  # a filter that can match nothing (an empty list of keys)
        return 0
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def _fixed_columns(queryset: QuerySet[Any]) -> set[str]:
    """Columns the queryset's top-level AND holds equal to one value (``col = value``)."""
    where = queryset.query.where
    if where.connector != "AND" or where.negated:
        return set()
    fixed = set()
    for child in where.children:
        target = getattr(getattr(child, "lhs", None), "target", None)
        if getattr(child, "lookup_name", None) == "exact" and target is not None:
            fixed.add(target.attname)
    return fixed


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """Unlike DRF's default, a malformed ``limit`` or ``offset`` is a 400, not silently ignored."""

    default_limit = 20
    cursor_query_param = "cursor"
    count_estimated = False
    next_cursor: str | None = None
    keyset = False
    cursor_mode = False
    has_next = False
    queryset_mode = False

    @property
    def max_limit(self) -> int:  # type: ignore[override]
        return int(settings.API_PAGE_SIZE_MAX)

    def get_limit(self, request: Request) -> int:
        limit = _parse(request, self.limit_query_param, 1)
        return self.default_limit if limit is None else min(limit, self.max_limit)

    def get_offset(self, request: Request) -> int:
        offset = _parse(request, self.offset_query_param, 0) or 0
        ceiling = int(settings.API_MAX_OFFSET)
        if offset > ceiling:
            raise ValidationError(
                {
                    self.offset_query_param: [
                        f"must be at most {ceiling} (API_MAX_OFFSET), got {offset}; "
                        "page deeper with the cursor of next_cursor"
                    ]
                }
            )
        return offset

    @staticmethod
    def keyset_allowed(queryset: QuerySet[Any]) -> bool:
        """Keyset paging needs the list in primary key order, which the view must have asked
        for: ``id`` alone, or after columns the filter holds to one value (``operation_id``
        of one operation, ordered so that the planner walks that operation's index)."""
        ordering = tuple(queryset.query.order_by) or tuple(queryset.model._meta.ordering or ())
        if not ordering or ordering[-1] not in {"id", "pk"} or queryset.model._meta.pk.name != "id":
            return False
        return set(ordering[:-1]) <= _fixed_columns(queryset)

    def count_rows(self, queryset: QuerySet[Any]) -> int:
        """Exact up to ``COUNT_ESTIMATE_THRESHOLD``, the planner's estimate beyond (flagged).

        The database is PostgreSQL everywhere (``DATABASE_URL`` takes no other scheme), so the
        planner is always there to ask: no branch on the vendor."""
        estimate = estimated_rows(queryset)
        if estimate > int(settings.COUNT_ESTIMATE_THRESHOLD):
            self.count_estimated = True
            return estimate
        return int(queryset.count())

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any] | None:
        if not isinstance(queryset, QuerySet):  # a list built in Python: DRF's own paging
            self.keyset = False
            self.cursor_mode = False
            self.queryset_mode = False
            return super().paginate_queryset(queryset, request, view)
        self.request = request
        self.queryset_mode = True
        limit = self.limit = self.get_limit(request)
        raw_cursor = request.query_params.get(self.cursor_query_param)
        self.keyset = self.keyset_allowed(queryset)
        if raw_cursor is not None and not self.keyset:
            raise ValidationError(
                {self.cursor_query_param: ["this list does not page by cursor: use offset"]}
            )
        if raw_cursor is not None and self.offset_query_param in request.query_params:
            raise ValidationError({self.cursor_query_param: ["give cursor or offset, not both"]})
        offset = self.offset = self.get_offset(request)
        self.count = self.count_rows(queryset)
        # The page's keys first, then its rows by key (a deferred join): the keys come from
        # an index-only scan whatever the planner thinks of the filter's selectivity. Asking
        # for whole rows with LIMIT let it pick a bitmap scan and a sort of all of an
        # operation's million rows (2.3 s for a first page at ten million, bench/lists.py).
        keyed = queryset.filter(pk__gt=decode_cursor(raw_cursor)) if raw_cursor is not None else queryset
        start = 0 if raw_cursor is not None else offset
        keys = list(keyed.values_list("pk", flat=True)[start : start + limit + 1])
        rows = list(queryset.filter(pk__in=keys)) if keys else []
        self.has_next = len(rows) > limit
        rows = rows[:limit]
        self.cursor_mode = raw_cursor is not None
        self.next_cursor = encode_cursor(rows[-1].pk) if self.keyset and self.has_next and rows else None
        return rows

    def get_next_link(self) -> str | None:
        if not self.queryset_mode:
            return super().get_next_link()
        if not self.has_next or self.request is None or self.limit is None or self.offset is None:
            return None
        url = self.request.build_absolute_uri()
        url = replace_query_param(url, self.limit_query_param, self.limit)
        following = self.offset + self.limit
        if self.cursor_mode or (self.next_cursor and following > int(settings.API_MAX_OFFSET)):
            url = remove_query_param(url, self.offset_query_param)
            return replace_query_param(url, self.cursor_query_param, self.next_cursor)
        return replace_query_param(url, self.offset_query_param, following)

    def get_previous_link(self) -> str | None:
        """Cursor pages go forward only: their ``previous`` is null."""
        if self.cursor_mode:
            return None
        return super().get_previous_link()

    def get_paginated_response(self, data: Any) -> Response:
        body = OrderedDict(
            [
                ("count", self.count),
                ("next", self.get_next_link()),
                ("previous", self.get_previous_link()),
                ("results", data),
            ]
        )
        # Added keys only, and only where they say something: a list not in key order (the
        # headless list of seed 001, say) keeps exactly the seeds' four keys unless its count
        # had to be estimated.
        if self.keyset or self.count_estimated:
            body["count_estimated"] = self.count_estimated
        if self.keyset:
            body["next_cursor"] = self.next_cursor
        return Response(body)

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        paged = super().get_paginated_response_schema(schema)
        paged["properties"]["count_estimated"] = {
            "type": "boolean",
            "description": (
                "count is the planner's estimate (more than COUNT_ESTIMATE_THRESHOLD rows). Always "
                "present on lists in key order; on others only when true."
            ),
        }
        paged["properties"]["next_cursor"] = {
            "type": "string",
            "nullable": True,
            "description": "Lists in key order only: pass as cursor for the next page (keyset paging).",
        }
        return paged

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
            if parameter["name"] == self.offset_query_param:
                parameter["schema"]["maximum"] = int(settings.API_MAX_OFFSET)
                parameter["description"] = (
                    "The initial index from which to return the results; at most API_MAX_OFFSET "
                    f"({int(settings.API_MAX_OFFSET)}). Deeper pages: cursor."
                )
        queryset = getattr(view, "queryset", None)
        if queryset is not None and self.keyset_allowed(queryset):
            for parameter in parameters:
                if parameter["name"] == self.offset_query_param:
                    # Where the deep pages of a long list are (issue 26): 0.1-0.4 s at offset
                    # 999,980 of a million devices against 13-76 ms by cursor (bench/console_scale.py).
                    parameter["description"] += (
                        " An offset page reads every row before it: walk a long list with "
                        "next_cursor as cursor instead, constant time at any depth."
                    )
            parameters.append(
                {
                    "name": self.cursor_query_param,
                    "required": False,
                    "in": "query",
                    "description": (
                        "The page after the one that gave this next_cursor (keyset paging: constant "
                        "time at any depth, no row skipped or repeated while rows are added). "
                        "Not with offset; previous is null on such pages."
                    ),
                    "schema": {"type": "string", "maxLength": 40},
                }
            )
        return parameters

"""The project's one way to read JSON from a client, and the API's parser built on it.

DRF's parser, and a bare ``json.loads``, let bad input through to a 500 or to the
database's error text; :func:`loads` refuses it with a reason and where it is:

- JSON nested deeper than Python's recursion limit, which would raise RecursionError.
- ``NaN`` and ``Infinity``, which are not JSON, and a number too large for a double
  (``1e99999``), which Python reads as infinity: PostgreSQL's ``jsonb`` refuses them
  ("Token "Infinity" is invalid"). Each is refused naming where it is (``details.x``).
- A string with a lone surrogate (``"\\ud800"``): valid JSON, but not storable as UTF-8.

Every body of the API goes through :class:`JSONParser`; JSON held in a string of a body
(the headless ``data`` form), typed in the console or read from a device file goes
through :func:`loads` too, so they all refuse the same things with the same reasons.

The form parsers are for the one endpoint whose seed posts a form (seed 001, headless
operations); they turn Django's "too many fields" into such a 400 too.
(orjson was tried for the 22 MB body of a 100,000-device import: 0.48 s of CPU against
0.62 s, too little to be worth a dependency; building the Python objects is the cost.)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import IO, Any

from django.core.exceptions import SuspiciousOperation, TooManyFieldsSent, TooManyFilesSent
from rest_framework import parsers
from rest_framework.exceptions import ParseError

# A JSON escape of a UTF-16 surrogate: only through one can a lone surrogate enter a string.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
LONE_SURROGATE = "holds a lone UTF-16 surrogate (not valid Unicode)"
NOT_FINITE = "numbers must be finite: {why}"


class JSONRefused(ValueError):
    """Why a JSON text is refused, and where: ``where`` is the path of the value at fault
    (``details.x``, ``[0].name``), ``None`` when the text itself is malformed."""

    def __init__(self, reason: str, where: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.where = where

    def field(self, root: str, *, fields_at_top: bool = False) -> str:
        """The name to put the reason under: ``root`` (``body``, ``data``) for the text as a
        whole, else the path below it; with ``fields_at_top`` the keys of a top-level object
        are the fields themselves (``details.x`` rather than ``body.details.x``)."""
        if not self.where:
            return root
        if self.where.startswith("["):
            return root + self.where
        return self.where if fields_at_top else f"{root}.{self.where}"


def _label(key: str) -> str:
    """A key as a path segment: escaped when it is not printable (a NUL, a lone surrogate
    must not reach the answer, which is encoded as UTF-8), and cut short."""
    text = key if key.isprintable() else json.dumps(key)[1:-1]
    return text if len(text) <= 64 else text[:61] + "..."


def find(value: Any, bad: Callable[[Any], bool]) -> tuple[str, Any] | None:
    """The path (``""`` for ``value`` itself) and the first key or value, in document order,
    that ``bad`` holds true of; ``None`` when there is none. Iterative: a document as deep as
    the parser allows must not exhaust the stack here either."""
    if not _any(value, bad):  # the common case, without building a path for every value
        return None
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            children = []
            for key, child in item.items():
                where = f"{path}.{_label(str(key))}" if path else _label(str(key))
                if bad(key):
                    return where, key
                children.append((child, where))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend(reversed([(child, f"{path}[{i}]") for i, child in enumerate(item)]))
        elif bad(item):
            return path, item
    return None


def _any(value: Any, bad: Callable[[Any], bool]) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if any(bad(key) for key in item):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif bad(item):
            return True
    return False


def _is_not_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _is_lone_surrogate(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def loads(raw: bytes | str) -> Any:
    """Parse client JSON; any problem is a :class:`JSONRefused` with the reason and where."""
    refused: list[str] = []  # why each number that is not finite is, in document order

    def constant(name: str) -> float:
        refused.append(f"{name} is not valid JSON")
        return float(name)

    def number(text: str) -> float:
        parsed = float(text)
        if math.isinf(parsed):  # a JSON number literal is never NaN; it overflows to infinity
            shown = text if len(text) <= 40 else text[:37] + "..."
            refused.append(f"{shown} is too large for a double")
        return parsed

    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        data = json.loads(text, parse_constant=constant, parse_float=number)
    except RecursionError:
        raise JSONRefused("nested too deeply") from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise JSONRefused(str(error)) from None
    if refused:
        # The parser met them in document order, and find() walks in it: the first of each.
        found = find(data, _is_not_finite)
        raise JSONRefused(NOT_FINITE.format(why=refused[0]), found[0] if found else "")
    # The search costs ~10 ms on 22 MB; the walk runs only when an escape is there.
    if _SURROGATE_ESCAPE.search(text):
        found = find(data, _is_lone_surrogate)
        if found is not None:
            raise JSONRefused(LONE_SURROGATE, found[0])
    return data


def parse_json(raw: bytes) -> Any:
    """Parse a request body; any problem is a :class:`ParseError` (400) naming the body, or
    the field (``details.x``) whose value cannot be stored."""
    try:
        return loads(raw)
    except JSONRefused as refused:
        if refused.where is None:
            raise ParseError(f"JSON parse error - {refused.reason}") from None
        raise ParseError({refused.field("body", fields_at_top=True): [refused.reason]}) from None


class JSONParser(parsers.JSONParser):
    def parse(
        self, stream: IO[bytes] | None, media_type: str | None = None, parser_context: Any = None
    ) -> Any:
        raw = stream.read() if stream is not None else b""
        return parse_json(raw)


def _refuse_suspicious(error: SuspiciousOperation) -> ParseError:
    """Too many fields or files is the client's fault (400); too large a body stays a 413."""
    return ParseError(f"Form parse error - {error}")


class FormParser(parsers.FormParser):
    """``application/x-www-form-urlencoded`` (seed 001's ``data`` field), with more fields than
    ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` a 400 rather than the unhandled error Django raises."""

    def parse(self, stream: IO[Any], media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except (TooManyFieldsSent, TooManyFilesSent) as error:
            raise _refuse_suspicious(error) from None


class MultiPartParser(parsers.MultiPartParser):
    """``multipart/form-data``, with too many fields or files a 400 (see :class:`FormParser`)."""

    def parse(self, stream: IO[Any], media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except (TooManyFieldsSent, TooManyFilesSent) as error:
            raise _refuse_suspicious(error) from None

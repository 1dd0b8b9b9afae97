"""The API's JSON parser: DRF's, made strict where DRF's lets bad input through to a 500.

- JSON nested deeper than Python's recursion limit is a 400, not a RecursionError.
- A string with a lone surrogate (``"\\ud800"``) is valid JSON but cannot be stored as
  UTF-8; it is a 400 here rather than an encoding error in the database driver.
- ``NaN`` and ``Infinity`` are not JSON: a 400.

Every problem is a :class:`ParseError`, which the exception handler reports under ``body``.
The form parsers are for the one endpoint whose seed posts a form (seed 001, headless
operations); they turn Django's "too many fields" into such a 400 too.
(orjson was tried for the 22 MB body of a 100,000-device import: 0.48 s of CPU against
0.62 s, too little to be worth a dependency; building the Python objects is the cost.)
"""

from __future__ import annotations

import json
import re
from typing import IO, Any

from django.core.exceptions import SuspiciousOperation, TooManyFieldsSent, TooManyFilesSent
from rest_framework import parsers
from rest_framework.exceptions import ParseError

# A JSON escape of a UTF-16 surrogate: only through one can a lone surrogate enter a string.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_json(raw: bytes) -> Any:
    """Parse a request body; any problem is a :class:`ParseError` (400, naming the body)."""
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        raise ParseError("JSON parse error - nested too deeply") from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ParseError(f"JSON parse error - {error}") from None
    # The search costs ~10 ms on 22 MB; the walk runs only when an escape is there.
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(data):
        raise ParseError("JSON parse error - a string holds a lone UTF-16 surrogate (not valid Unicode)")
    return data


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

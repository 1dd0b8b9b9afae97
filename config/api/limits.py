"""Size limits of the API's free-form fields, read from the settings at each request.

A body may be up to ``API_MAX_BODY_MB`` (a bulk import is large), but one field of it should
not: a 1 MB ``details`` string is stored, indexed nowhere, and handed back in every list of
command statuses. So JSON blobs (a command's ``details``, an operation's ``arguments``, a
headless operation's ``parameters``) are held to ``API_MAX_JSON_FIELD_KB`` of compact UTF-8
JSON, and free text (``reason``, a group's ``description``) to ``API_MAX_TEXT_FIELD_CHARS``.
Past them, the field's validator answers a 400 naming the field and the setting.

Both are validators on the serializer fields, so the console's forms, which run the API's
serializers, hold the same limits; the text one is a ``MaxLengthValidator`` with a callable
limit, which drf-spectacular shows as the field's ``maxLength``.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.validators import MaxLengthValidator
from rest_framework.exceptions import ValidationError


def json_field_limit() -> int:
    """The largest JSON blob, in bytes of its compact UTF-8 encoding."""
    return int(settings.API_MAX_JSON_FIELD_KB) * 1024


def text_field_limit() -> int:
    """The longest free text, in characters."""
    return int(settings.API_MAX_TEXT_FIELD_CHARS)


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON in UTF-8, as it is stored (lone surrogates counted
    as they are, so the check itself cannot fail on them)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return len(text.encode("utf-8", "surrogatepass"))


class MaxJsonSize:
    """Validator: the value, encoded as JSON, is at most ``API_MAX_JSON_FIELD_KB``."""

    def __call__(self, value: Any) -> None:
        limit = json_field_limit()
        try:
            size = json_size(value)
        except RecursionError:
            raise ValidationError("is nested too deeply") from None
        except (TypeError, ValueError):  # nothing the JSON parsers produce; be safe anyway
            raise ValidationError("is not JSON") from None
        if size > limit:
            raise ValidationError(
                f"is {size} bytes as JSON; at most {limit // 1024} KB (API_MAX_JSON_FIELD_KB)"
            )

    def __eq__(self, other: object) -> bool:  # DRF compares validators when it copies fields
        return isinstance(other, MaxJsonSize)

    def __hash__(self) -> int:
        return hash(MaxJsonSize)


def max_json_size() -> MaxJsonSize:
    return MaxJsonSize()


def max_text_length() -> MaxLengthValidator:
    """Validator: at most ``API_MAX_TEXT_FIELD_CHARS`` characters (``maxLength`` in the schema)."""
    return MaxLengthValidator(
        text_field_limit,
        message="must be at most %(limit_value)d characters (API_MAX_TEXT_FIELD_CHARS), got %(show_value)d",
    )


#: The ``help_text`` of a JSON blob field: the schema cannot state a size in bytes.
JSON_FIELD_HELP = "At most API_MAX_JSON_FIELD_KB (default 64 KB) as compact UTF-8 JSON."

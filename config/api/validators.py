"""Validators of what a client writes into JSON fields (``arguments``, ``parameters``,
``details``...), so that the database never answers in its own words.

PostgreSQL's ``jsonb`` refuses U+0000 in a string or a key ("\\u0000 cannot be converted to
text") and numbers that are not finite ("Token "Infinity" is invalid"); before these
validators both came back as a 400 carrying the statement's text. The body parser
(``config.api.parsers``) already refuses non-finite numbers in JSON; this also covers values
that reach a serializer another way (the console's forms run the API's serializers).
Text fields need nothing: DRF's ``CharField`` refuses NUL itself.

One walk over the value, O(its size): cheap enough for a device's status report.
"""

from __future__ import annotations

import math
from typing import Any

from rest_framework import serializers

from config.api.parsers import find

NUL = "must not contain the NUL character (\\u0000)"
NOT_FINITE = "numbers must be finite"


def _unstorable(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    return isinstance(value, float) and not math.isfinite(value)


def storable_json(value: Any) -> None:
    """Refuse a NUL in any string or key, and NaN or an infinity, naming where it is."""
    found = find(value, _unstorable)
    if found is None:
        return
    where, item = found
    reason = NUL if isinstance(item, str) else NOT_FINITE
    raise serializers.ValidationError(f"{reason} (at {where})" if where else reason)

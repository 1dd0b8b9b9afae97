"""The API's choice field: an unknown value is refused naming the values that are valid.

DRF's ``ChoiceField`` says only ``"X" is not a valid choice.``, so a client has to find the
enum in the schema to learn what it may send. This one says it in the error, with the same
``invalid_choice`` code (the envelope's ``error_code`` stays ``invalid``, docs/errors.md).

Every choice field of the API is this one (``tests/test_bad_input.py`` keeps DRF's out of
the serializers); the list filters' choices say the same through ``config.api.filters``.

A long list (an operation's 90 types) is not written out: it would drown the envelope's
one-line ``message`` and every log line that carries it, and the schema lists it already.
Such an error gives the closest values instead (a typo's fix) and points to the schema.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from rest_framework import serializers

#: Longest list of valid values an error writes out; beyond it, the closest and the schema.
LISTED_AT_MOST = 20
#: Where the longer lists are (Swagger UI reads the same document).
SCHEMA_HINT = "GET /api/schema/ (or /api/docs/) lists them"


def valid_values(given: Any, choices: Iterable[Any]) -> str:
    """The end of an invalid-choice message: the valid values, or for a long list how many
    there are, the closest to ``given`` (case aside) and where the rest are listed."""
    values = [str(choice) for choice in choices if str(choice) != ""]
    if len(values) <= LISTED_AT_MOST:
        return "valid values: " + ", ".join(values)
    by_fold = {value.casefold(): value for value in values}
    close = [by_fold[found] for found in difflib.get_close_matches(str(given).casefold(), list(by_fold), n=3)]
    nearest = f"closest: {', '.join(close)}; " if close else ""
    return f"{nearest}one of {len(values)} values, {SCHEMA_HINT}"


class ChoiceField(serializers.ChoiceField):
    """DRF's ``ChoiceField`` whose refusal names the valid values (:func:`valid_values`)."""

    default_error_messages = {"invalid_choice": '"{input}" is not a valid choice; {valid}.'}

    def to_internal_value(self, data: Any) -> Any:
        if data == "" and self.allow_blank:
            return ""
        try:
            return self.choice_strings_to_values[str(data)]
        except KeyError:
            self.fail("invalid_choice", input=data, valid=valid_values(data, self.choice_strings_to_values))

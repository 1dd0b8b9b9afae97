"""How the console shows a refusal: the one place it translates errors into page messages.

A service raises :class:`config.errors.DomainError`; the console's forms also run the API's
serializers, whose refusals are DRF ``ValidationError``s. Both become ``field: reason`` lines.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError

from config.api.exceptions import first_message
from config.errors import DomainError

#: What a console view catches around a service call or a serializer.
REFUSALS = (DomainError, ValidationError)


def refusal_messages(error: DomainError | ValidationError) -> list[str]:
    """Each reason of the refusal as one line, ``field: reason``."""
    if isinstance(error, DomainError):
        return error.messages()
    return detail_messages(error.detail)


def detail_messages(detail: Any) -> list[str]:
    """DRF's error detail (a dict of lists, a list, a string) as ``field: reason`` lines."""
    if isinstance(detail, dict):
        lines: list[str] = []
        for field, problems in detail.items():
            for problem in problems if isinstance(problems, list) else [problems]:
                lines.append(first_message({field: problem}))
        return lines
    return [first_message(detail)]

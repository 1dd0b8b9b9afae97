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


def refusal_items(error: DomainError | ValidationError) -> list[tuple[str, str]]:
    """Each reason of the refusal with the API's name of its field (``schedule_args.timezone``,
    ``rollout.abort[0].min_executed``; ``detail`` when it names none), so that a console form
    can put it at its own field."""
    if isinstance(error, DomainError):
        return [(name, reason) for name, reasons in error.errors.items() for reason in reasons]
    return _detail_items(error.detail, "")


def _detail_items(detail: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(detail, dict):
        items: list[tuple[str, str]] = []
        for key, value in detail.items():
            name = path if key == "non_field_errors" else (f"{path}.{key}" if path else str(key))
            items += _detail_items(value, name)
        return items
    if isinstance(detail, list):
        if any(isinstance(value, (dict, list)) for value in detail):
            return [
                item
                for index, value in enumerate(detail)
                for item in _detail_items(value, f"{path}[{index}]")
            ]
        return [(path or "detail", str(value)) for value in detail]
    return [(path or "detail", str(detail))]

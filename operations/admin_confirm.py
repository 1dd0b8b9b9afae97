"""The console's confirmations: what an irreversible button touches, said before it acts.

Cancel, time out, delete and deny each stop or remove work on many devices at once, and
each sat one click away (issue 26: "one click stops a fleet"). Their views now act only on
a POST that carries :data:`CONFIRMED`; anything else (the button's GET, a POST without
it) answers the confirmation page (``admin/operations/operation/confirm.html``), which
names the operation and says how many devices the action touches, from the operation's
exact counters (no count of its command rows), and posts back with :data:`CONFIRMED`.
No script: the page is a form, as the Content-Security-Policy would have it anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest
from django.template.response import TemplateResponse

from operations.models import Operation

#: The field a confirmation page posts; a POST without it only asks.
CONFIRMED = "confirmed"
CONFIRM_TEMPLATE = "admin/operations/operation/confirm.html"


@dataclass(frozen=True)
class Confirmation:
    """One confirmation page: the question, what it touches (a line each), the button."""

    title: str
    lines: list[str]
    button: str
    action_url: str
    back_url: str
    #: Fields posted back as they came (an action's name and selected keys, a remark).
    hidden: list[tuple[str, str]] = field(default_factory=list)
    danger: bool = True


def confirmed(request: HttpRequest) -> bool:
    return request.method == "POST" and request.POST.get(CONFIRMED) == "yes"


def render(
    request: HttpRequest, site_context: dict[str, Any], confirmation: Confirmation
) -> TemplateResponse:
    context = {**site_context, "title": confirmation.title, "confirmation": confirmation}
    return TemplateResponse(request, CONFIRM_TEMPLATE, context)


def devices_in_words(count: int) -> str:
    return f"{count:,} device{'' if count == 1 else 's'}"


def stop_lines(operation: Operation, verb: str, command_state: str) -> list[str]:
    """What stopping ``operation`` does to its devices, in numbers from its counters."""
    unfinished = operation.pending_count
    finished = operation.finished_count
    lines = [
        f"It touches {devices_in_words(unfinished)}: their unfinished commands become {command_state} "
        "and nothing more of the operation is handed out.",
        f"{devices_in_words(finished)} already finished stay as they are; "
        f"{operation.resolved_count:,} devices in all.",
    ]
    if operation.resolved_count == 0:
        lines[0] = (
            f"Its devices are not counted yet ({operation.state_name}): none gets the command; "
            "the operation is " + verb + "."
        )
        lines.pop()
    if operation.schedule_type == "RECURRING":
        lines.append("A recurring series makes no more runs, and its unfinished runs stop too.")
    lines.append("This cannot be undone.")
    return lines


def bulk_stop_lines(operations: Iterable[Operation], command_state: str) -> list[str]:
    chosen = list(operations)
    unfinished = sum(operation.pending_count for operation in chosen)
    lines = [
        f"{len(chosen)} unfinished operation(s), touching {devices_in_words(unfinished)}: their unfinished "
        f"commands become {command_state}.",
    ]
    lines += [
        f"{operation.get_operation_type_display()} {operation.pk} ({operation.state_name}): "
        f"{devices_in_words(operation.pending_count)} unfinished of {operation.resolved_count:,}"
        for operation in chosen[:20]
    ]
    if len(chosen) > 20:
        lines.append(f"and {len(chosen) - 20} more")
    lines.append("This cannot be undone.")
    return lines

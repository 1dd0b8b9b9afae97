"""``manage.py export_operations``: finished operations with their commands as JSON lines,
for users who must keep what retention removes (docs/retention.md)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from typing import IO, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from commands.models import CommandStatus
from commands.payload import PAYLOAD_COLUMNS, command_payload
from config import timestamps
from inventory.models import Tenant
from operations.choices import TERMINAL_STATES
from operations.models import Operation
from operations.retention import expired_operations

#: Commands read per round trip (a server-side cursor): memory stays flat for a million.
CHUNK = 10_000


def operation_line(operation: Operation) -> dict[str, Any]:
    return {
        "type": "operation",
        "id": str(operation.pk),
        "tenant": operation.tenant.slug,
        "operation_type": operation.operation_type,
        "schedule_type": operation.schedule_type,
        "schedule_args": operation.schedule_args,
        "device_query": operation.device_query,
        "arguments": operation.arguments,
        "state": operation.state_name,
        "reason": operation.reason,
        "created_by": operation.created_by,
        "created_at": timestamps.format(operation.created_at),
        "updated_at": timestamps.format(operation.updated_at),
        "counts": operation.counts(),
    }


def command_lines(operation: Operation) -> Iterator[dict[str, Any]]:
    rows = (
        CommandStatus.objects.filter(operation_id=operation.pk)
        .order_by("device_id")
        .values_list(*PAYLOAD_COLUMNS, "device__device_id")
    )
    for row in rows.iterator(chunk_size=CHUNK):
        values = dict(zip(PAYLOAD_COLUMNS, row[:-1], strict=True))
        yield {"type": "command", **command_payload(device=row[-1], **values)}


class Command(BaseCommand):
    help = (
        "Write finished operations and their commands as JSON lines: one 'operation' line, then one "
        "'command' line per device. By default the operations the next retention run removes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than-days",
            type=int,
            default=None,
            help="finished operations last changed more than this many days ago "
            "(default OPERATION_RETENTION_DAYS; 0 exports every finished operation)",
        )
        parser.add_argument("--tenant", help="only this tenant's (its slug)")
        parser.add_argument("--output", default="-", help="a file to write (default: standard output)")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than_days"]
        days = settings.OPERATION_RETENTION_DAYS if days is None else days
        if days < 0:
            raise CommandError(f"--older-than-days must be 0 or more, not {days}")
        if days:
            chosen = Operation.objects.filter(expired_operations(timezone.now() - dt.timedelta(days=days)))
        else:
            chosen = Operation.objects.filter(state__in=sorted(TERMINAL_STATES))
        if options["tenant"]:
            try:
                chosen = chosen.filter(tenant=Tenant.objects.get(slug=options["tenant"]))
            except Tenant.DoesNotExist:
                raise CommandError(f"no tenant {options['tenant']!r}") from None
        out: IO[str] = sys.stdout if options["output"] == "-" else open(options["output"], "w")  # noqa: SIM115
        operations = commands = 0
        try:
            for operation in chosen.select_related("tenant").order_by("updated_at", "pk").iterator():
                out.write(json.dumps(operation_line(operation)) + "\n")
                operations += 1
                for line in command_lines(operation):
                    out.write(json.dumps(line) + "\n")
                    commands += 1
        finally:
            if out is not sys.stdout:
                out.close()
        self.stderr.write(f"exported {operations} operations and {commands} commands")

"""Import devices from a CSV file (header row) or JSON lines, validated exactly as the API does."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.exceptions import ValidationError
from tqdm import tqdm

from inventory.models import Tenant
from inventory.services import bulk_import_devices, validate_device_rows

LIST_FIELDS = ("tags", "groups")


def read_rows(path: Path) -> Iterator[Any]:
    """Rows as dicts. CSV list columns (tags, groups) separate items with ``;``."""
    with path.open(newline="", encoding="utf-8") as handle:
        first = handle.readline()
        handle.seek(0)
        if first.lstrip().startswith("{"):
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as error:
                        raise CommandError(f"line {number}: not valid JSON ({error.msg})") from None
            return
        for row in csv.DictReader(handle):
            record: dict[str, Any] = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            for name in LIST_FIELDS:
                if name in record:
                    record[name] = [item.strip() for item in record[name].split(";") if item.strip()]
            for name, value in list(record.items()):
                if value == "" and name not in LIST_FIELDS:
                    del record[name]
            yield record


class Command(BaseCommand):
    help = "Import devices for a tenant from CSV (with a header) or JSON lines; all or nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--on-conflict", choices=["error", "skip"], default="error")
        parser.add_argument("--tokens", type=Path, help="write 'id,token' lines for the new devices here")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = Tenant.objects.get(slug=options["tenant"])
        except Tenant.DoesNotExist:
            raise CommandError(f"no tenant {options['tenant']!r}") from None
        path: Path = options["file"]
        if not path.exists():
            raise CommandError(f"{path} does not exist")
        quiet = options["verbosity"] < 1
        rows = list(tqdm(read_rows(path), desc="reading", unit=" rows", disable=quiet))
        cleaned, errors = validate_device_rows(rows)
        if errors:
            for where, problem in list(errors.items())[:20]:
                self.stderr.write(f"{where}: {problem}")
            raise CommandError(f"{len(errors)} row(s) rejected; nothing was imported")
        try:
            with tqdm(total=len(cleaned), desc="importing", unit=" devices", disable=quiet) as progress:
                result = bulk_import_devices(
                    tenant.pk, cleaned, on_conflict=options["on_conflict"], progress=progress.update
                )
        except ValidationError as error:
            raise CommandError(str(error.detail)) from None
        if options["tokens"]:
            with options["tokens"].open("w") as out:
                out.writelines(f"{device_id},{token}\n" for device_id, token in result.created)
        self.stdout.write(f"imported {len(result.created)} device(s), skipped {len(result.skipped)}")

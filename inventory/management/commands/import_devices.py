"""Import devices from a CSV file (header row) or JSON lines, validated exactly as the API does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from config.errors import DomainError
from inventory import device_files
from inventory.models import Tenant
from inventory.services import bulk_import_devices, validate_device_rows


def read_rows(path: Path) -> list[Any]:
    """Every row of the file (CSV or JSON lines), read by the shared reader."""
    with path.open(newline="", encoding="utf-8") as handle:
        try:
            return list(device_files.read_rows(handle))
        except device_files.DeviceFileError as error:
            raise CommandError(str(error)) from None


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
        rows = read_rows(path)
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
        except DomainError as error:
            raise CommandError("; ".join(error.messages())) from None
        if options["tokens"]:
            with options["tokens"].open("w") as out:
                out.writelines(f"{device_id},{token}\n" for device_id, token in result.created)
        self.stdout.write(f"imported {len(result.created)} device(s), skipped {len(result.skipped)}")

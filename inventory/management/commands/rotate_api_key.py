from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inventory.models import ApiKey
from inventory.services import rotate_api_key


class Command(BaseCommand):
    help = (
        "Replace an API key by a new one (same tenant, role, name and expiry) and print the new key, "
        "alone, on the last line. The old key is revoked at once, or expires after --grace-seconds."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--prefix", required=True, help="the key's prefix: dok_<prefix>_…")
        parser.add_argument("--grace-seconds", type=int, default=0, help="keep the old key working this long")

    def handle(self, *args: Any, **options: Any) -> None:
        prefix = options["prefix"].removeprefix("dok_").split("_")[0]
        key = ApiKey.objects.filter(prefix=prefix).select_related("tenant").first()
        if key is None:
            raise CommandError(f"no API key with prefix {prefix!r}")
        try:
            new_key, plain = rotate_api_key(key, grace_seconds=options["grace_seconds"])
        except ValueError as error:
            raise CommandError(str(error)) from None
        grace = options["grace_seconds"]
        old = f"expires in {grace} s" if grace > 0 else "is revoked"
        self.stderr.write(f"API key {new_key.id} replaces {key.id} (tenant {key.tenant.slug}), which {old}:")
        self.stdout.write(plain)

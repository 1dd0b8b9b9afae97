from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from inventory.services import get_or_create_tenant


class Command(BaseCommand):
    help = "Create a tenant (organisation). Does nothing, without error, if the slug exists."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant, created = get_or_create_tenant(options["slug"], options["name"])
        self.stdout.write(f"{'created' if created else 'exists'}: tenant {tenant.slug}")

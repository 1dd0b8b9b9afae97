from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inventory.models import Role, Tenant
from inventory.services import create_api_key


class Command(BaseCommand):
    help = "Create an API key for a tenant and print it, alone, on the last line (it is shown only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="the tenant's slug")
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--name", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = Tenant.objects.get(slug=options["tenant"])
        except Tenant.DoesNotExist:
            raise CommandError(f"no tenant {options['tenant']!r}; create it with create_tenant") from None
        key, plain = create_api_key(tenant, options["role"], options["name"] or f"{options['role']} key")
        self.stderr.write(f"API key {key.id} ({key.role}) for tenant {tenant.slug}; store it now:")
        self.stdout.write(plain)

"""Demo data for a first run: tenant ``default``, an admin key, a console user and devices."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from inventory.models import Device
from inventory.services import bulk_import_devices, create_api_key, get_or_create_tenant

DEMO_DEVICES = [
    {"device_id": "kiosk-berlin-01", "os": "android", "model": "Kiosk 10", "timezone": "Europe/Berlin"},
    {"device_id": "kiosk-berlin-02", "os": "android", "model": "Kiosk 10", "timezone": "Europe/Berlin"},
    {"device_id": "pos-nyc-01", "os": "linux", "model": "POS T2", "timezone": "America/New_York"},
    {"device_id": "phone-tokyo-01", "os": "ios", "model": "iPhone 15", "timezone": "Asia/Tokyo"},
    {"device_id": "router-sp-01", "os": "linux", "model": "Edge R1", "timezone": "America/Sao_Paulo"},
]


class Command(BaseCommand):
    help = "Create the demo tenant 'default' with an admin key, a console user and a few devices."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant, _ = get_or_create_tenant("default", "Default organisation")
        new = [
            dict(row, tags=["demo"])
            for row in DEMO_DEVICES
            if not Device.objects.filter(tenant=tenant, device_id=row["device_id"]).exists()
        ]
        result = bulk_import_devices(tenant.pk, new) if new else None
        user_model = get_user_model()
        password = None
        if not user_model.objects.filter(username=options["username"]).exists():
            password = secrets.token_urlsafe(12)
            user_model.objects.create_superuser(options["username"], "", password)
        _, plain = create_api_key(tenant, "admin", "demo admin key")

        self.stdout.write("")
        self.stdout.write("Demo tenant: default")
        if result:
            for device_id, token in result.created:
                self.stdout.write(f"  device {device_id:<16} token {token}")
        if password:
            self.stdout.write(
                f"Console: http://127.0.0.1:8000/admin/  user {options['username']}  password {password}"
            )
        self.stdout.write("Admin API key (shown once):")
        self.stdout.write(plain)

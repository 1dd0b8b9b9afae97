"""``manage.py mqtt_sync_logins``: make the broker's device logins what the server wants.

The sync that follows each device change (``inventory.tasks.sync_broker_logins``) keeps the
broker in step; this repairs whatever drifted anyway (a login deleted by hand, a stray one, a
lost task, a changed ``SECRET_KEY``), and the beat runs the same every
``MQTT_LOGIN_RECONCILE_SECONDS``. Idempotent: a second run reports nothing to change.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inventory import broker_logins


class Command(BaseCommand):
    help = (
        "Reconcile the devices' logins on the MQTT broker (Mosquitto dynamic security) with the "
        "devices: create the missing, delete the stray, disable the inactive, fix stale passwords."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="report what would change, change nothing")
        parser.add_argument(
            "--passwords",
            action="store_true",
            help="set every login's password again, also those that look current (one changed by hand "
            "on the broker cannot be seen); disconnects every device, which logs in again",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not broker_logins.enabled():
            raise CommandError("MQTT_URL is unset: the server has no broker to keep logins on.")
        try:
            change = broker_logins.reconcile(dry_run=options["dry_run"], passwords=options["passwords"])
        except broker_logins.BrokerUnavailable as error:
            raise CommandError(str(error)) from error
        verb = "would change" if options["dry_run"] else "changed"
        for kind in ("created", "updated", "enabled", "disabled", "deleted"):
            for name in getattr(change, kind):
                self.stdout.write(f"{kind}: {name}")
        self.stdout.write(f"broker logins {verb}: {change.summary()}")

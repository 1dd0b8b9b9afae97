"""``manage.py mqtt_sync_logins``: make the broker's device logins what the server wants.

The sync that follows each device change (``inventory.tasks.sync_broker_logins``) keeps the
broker in step; this repairs whatever drifted anyway (a login deleted by hand, a stray one, a
lost task, a changed ``SECRET_KEY``), and the beat runs the same every
``MQTT_LOGIN_RECONCILE_SECONDS``. Idempotent: a second run reports nothing to change.

``--offline FILE`` does the same to the plugin's file while the broker is stopped, and gives
every active device a login: the way to make thousands at once (the running plugin rewrites its
whole file after each change; ``broker_logins.provision_offline``, docs/mqtt.md).
"""

from __future__ import annotations

from pathlib import Path
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
        parser.add_argument(
            "--offline",
            metavar="FILE",
            type=Path,
            help="write the logins of every active device into this dynamic-security file directly, in "
            "one write, while its broker is stopped (thousands of logins in seconds); refused while a "
            "mosquitto on this machine runs on the file",
        )
        parser.add_argument(
            "--force", action="store_true", help="with --offline: write even though a broker runs on the file"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["offline"] is not None:
            self._offline(options["offline"], options["dry_run"], options["force"])
            return
        if options["force"]:
            raise CommandError("--force goes with --offline.")
        if not broker_logins.enabled():
            raise CommandError("MQTT_URL is unset: the server has no broker to keep logins on.")
        try:
            change = broker_logins.reconcile(dry_run=options["dry_run"], passwords=options["passwords"])
        except broker_logins.BrokerUnavailable as error:
            raise CommandError(str(error)) from error
        self._report(change, "would change" if options["dry_run"] else "changed")

    def _offline(self, path: Path, dry_run: bool, force: bool) -> None:
        if not path.is_file():
            raise CommandError(
                f"{path}: no such file (the plugin's file, e.g. var/mosquitto/dynamic-security.json)"
            )
        try:
            change = broker_logins.provision_offline(path, dry_run=dry_run, force=force)
        except broker_logins.BrokerRunning as error:
            raise CommandError(f"{error} (--force)") from error
        except ValueError as error:
            raise CommandError(f"{path}: not a dynamic-security file ({error})") from error
        self._report(change, f"would change in {path}" if dry_run else f"changed in {path}")

    def _report(self, change: broker_logins.Change, verb: str) -> None:
        for kind in ("created", "updated", "enabled", "disabled", "deleted"):
            names = getattr(change, kind)
            for name in names[:20]:
                self.stdout.write(f"{kind}: {name}")
            if len(names) > 20:
                self.stdout.write(f"{kind}: ... and {len(names) - 20} more")
        self.stdout.write(f"broker logins {verb}: {change.summary()}")

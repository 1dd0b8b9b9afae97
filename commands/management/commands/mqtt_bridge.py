"""``manage.py mqtt_bridge``: the server's MQTT bridge (contract section 14, commands.bridge)."""

from __future__ import annotations

import signal
import socket
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from commands.bridge import Bridge, retire


class Command(BaseCommand):
    help = (
        "Answer devices over MQTT (inbox/get, command updates, in batches) and publish the push "
        "notifies. Runs until SIGTERM or SIGINT; needs MQTT_URL. Several may run: give each its own "
        "--client-id and keep it across restarts (its broker session holds its unacknowledged messages)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--client-id",
            help="This bridge's MQTT client id, the same at every restart (default: dos-bridge-<host>).",
        )
        parser.add_argument("--batch-size", type=int, default=settings.MQTT_BATCH_SIZE)
        parser.add_argument("--batch-ms", type=int, default=settings.MQTT_BATCH_MS)
        parser.add_argument(
            "--no-notifies", action="store_true", help="Do not publish the push outbox (another bridge does)."
        )
        parser.add_argument(
            "--retire",
            action="store_true",
            help=(
                "End the broker session of --client-id for good and exit, for a bridge taken away "
                "(stop it first): its share of the devices' messages goes to the other bridges."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.MQTT_URL:
            raise CommandError("MQTT_URL is not set: there is no broker to bridge")
        if options["retire"]:
            if options["client_id"] is None:
                raise CommandError("--retire needs the --client-id of the bridge to retire (stopped first)")
            try:
                accepted = retire(settings.MQTT_URL, options["client_id"])
            except OSError as error:
                raise CommandError(f"the broker could not be reached: {error}") from None
            if not accepted:
                raise CommandError(f"the broker did not accept {options['client_id']}: session not ended")
            self.stdout.write(f"the broker session of {options['client_id']} is ended")
            return
        if options["batch_size"] < 1 or options["batch_ms"] < 1:
            raise CommandError("--batch-size and --batch-ms must be at least 1")
        bridge = Bridge(
            settings.MQTT_URL,
            options["client_id"] or f"dos-bridge-{socket.gethostname()}",
            options["batch_size"],
            options["batch_ms"],
            publish_notifies=not options["no_notifies"],
        )
        # Finish the batch in hand, acknowledge it, disconnect.
        signal.signal(signal.SIGTERM, lambda *_: bridge.stop())
        signal.signal(signal.SIGINT, lambda *_: bridge.stop())
        bridge.run()

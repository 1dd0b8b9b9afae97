"""Demo data for a first run: tenant ``default``, an admin key, a console user and devices.

Run by ``make run`` on every start; it changes nothing that exists and keeps the credentials
in ``VAR_DIR/credentials.txt`` (``inventory/demo.py``), which ``runstack --show-credentials``
prints once the server answers.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from inventory import demo


class Command(BaseCommand):
    help = (
        "Create the demo tenant 'default' with an admin key, a console user and a few devices, "
        "and print (and keep in var/credentials.txt, mode 0600) the credentials that work."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument(
            "--addr",
            help="host:port the server runs on, for the URLs shown (default: the saved one, else "
            f"{demo.DEFAULT_ADDR})",
        )
        parser.add_argument(
            "--reset-password", action="store_true", help="give the console user a new random password"
        )
        parser.add_argument(
            "--quiet",
            action="store_true",
            help="only write the credentials file (make run prints it once the servers are up)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        credentials = demo.ensure_demo(options["addr"], options["username"], options["reset_password"])
        block = demo.save(credentials)
        if options["quiet"]:
            self.stdout.write(f"Demo ready; credentials in {demo.credentials_file()}")
        else:
            self.stdout.write(block, ending="")

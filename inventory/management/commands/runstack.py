"""Run the whole server on one machine: the web server, a Celery worker and celery beat.

For development and demos (``make run``); production runs the three as separate services
(see README.md, "Scaling out").
"""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run runserver, a Celery worker and celery beat together until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> None:
        python = sys.executable
        celery = [python, "-m", "celery", "-A", "config"]
        children = [
            subprocess.Popen([*celery, "worker", "-l", "info", "-c", "2"]),
            subprocess.Popen([*celery, "beat", "-l", "info", "-s", "var/celerybeat-schedule"]),
        ]
        web = subprocess.Popen([python, "manage.py", "runserver", "--noreload", options["addrport"]])
        children.append(web)

        def stop(*_: Any) -> None:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        try:
            web.wait()
        except KeyboardInterrupt:
            pass
        finally:
            stop()
            for child in children:
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()

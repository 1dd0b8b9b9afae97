"""Run the whole server on one machine: the web server, two Celery workers and celery beat.

For development and demos (``make run``); production runs them as separate services
(see README.md, "Scaling out"). The two workers are production's layout in small: one for
Celery's default queue (fan-outs, stops, sweeps, headless and maintenance runs) and one for
the ``webhooks`` queue (``CELERY_TASK_ROUTES``), so that a webhook receiver that is slow, or
trickles its answer until the attempt's deadline, holds a delivery process and never the one
that dispatches operations (issue 23). Once the web server answers and the workers and beat
are up, it can print the demo's credentials (``--show-credentials``), so they come after the
start-up lines of the processes instead of scrolling away under them. The workers and beat say
when they are up by creating files in ``CELERY_READY_DIR`` (``config/celery.py``).

Before it starts anything it checks that the web server's address is free: runserver's own
"That port is already in use" would come after the workers' and beat's start-up lines (and
their tracebacks once runstack stops them), so runstack says it in one line that names the
way out (``make run ADDR=...``) and exits with status 1 (``--check-port`` only checks: the
Makefile runs it before it starts PostgreSQL).

Its processes share one Prometheus multi-process folder (``PROMETHEUS_MULTIPROC_DIR``, by
default ``var/prometheus``, emptied at start as ``config/metrics.py`` asks), so ``/metrics``
of its web server counts what the workers do too (fan-outs, webhook deliveries).

It runs the whole server, so it belongs to the top floor (``server/``), with the URLconf. It
lived in ``inventory`` only because ``config`` is no installed app, so cannot hold management
commands, and ``inventory`` already held ``setup_demo``; it still reads ``inventory.demo``
(the demo's address and credentials file), a floor below.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from config.metrics import reset_multiprocess_dir
from inventory import demo

#: Celery warns, on every start as root, that the worker runs as root. A local run as root
#: (a container, a VM) is the user's choice; runstack says so in one line instead.
ROOT_WARNING = "ignore:You're running the worker with superuser privileges"
#: Longest wait for the web server and the workers before the credentials are printed anyway.
READY_TIMEOUT = 90.0
#: The workers: node name (before ``@``; also the name of its ready file) and the queues it takes.
WORKERS = (("celery", settings.CELERY_TASK_DEFAULT_QUEUE), ("webhooks", settings.WEBHOOK_QUEUE))


def taken(addrport: str) -> str | None:
    """Why runserver could not listen on ``addrport``, in one line naming ``make run ADDR=...``
    with the next port, or None when it is free. Binds the address as runserver would (no
    ``SO_REUSEADDR`` on purpose: what a listener holds is refused here as there)."""
    host, _, port_text = addrport.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if host == "0":
        host = "0.0.0.0"
    port = int(port_text) if port_text.isdigit() else 8000
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, port))
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            return None  # not ours to judge (a name, no such interface): runserver says why
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        return (
            f"runstack: {shown}:{port} is already in use (another make run?); "
            f"serve on another port: make run ADDR={shown}:{port + 1}"
        )
    return None


def _answers(url: str) -> bool:
    """Whether the web server answers ``url`` with anything at all (any HTTP status)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


class Command(BaseCommand):
    help = (
        "Run runserver, a Celery worker for the default queue, one for the webhooks queue and celery "
        "beat together until interrupted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addrport", nargs="?", default=demo.DEFAULT_ADDR)
        parser.add_argument(
            "--celery-loglevel",
            default="warning",
            help="log level of the worker and beat (default warning: no line per periodic task; "
            "info shows every task)",
        )
        parser.add_argument(
            "--show-credentials",
            action="store_true",
            help=f"print {demo.credentials_file().name} (written by setup_demo) once the servers are up",
        )
        parser.add_argument(
            "--check-port",
            action="store_true",
            help="only check that the address is free (exit status 1 and one line if it is not)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        busy = taken(options["addrport"])
        if busy is not None:
            self.stderr.write(busy)
            sys.exit(1)
        if options["check_port"]:
            return
        python = sys.executable
        level = options["celery_loglevel"]
        ready = Path(tempfile.mkdtemp(prefix="runstack-"))  # config/celery.py: worker and beat say when up
        # Unbuffered, so the three processes' lines reach the terminal (or a log file) in order.
        metrics = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(Path(settings.VAR_DIR) / "prometheus")
        reset_multiprocess_dir(Path(metrics))
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PROMETHEUS_MULTIPROC_DIR": metrics}
        celery_env = {**env, "CELERY_READY_DIR": str(ready)}
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            warnings = os.environ.get("PYTHONWARNINGS")
            celery_env["PYTHONWARNINGS"] = f"{warnings},{ROOT_WARNING}" if warnings else ROOT_WARNING
            self.stdout.write("runstack: running as root, so the Celery worker runs as root too.")
        celery = [python, "-m", "celery", "-A", "config"]
        children = [
            *(
                subprocess.Popen(
                    [*celery, "worker", "-l", level, "-c", "2", "-Q", queue, "-n", f"{node}@%h"],
                    env=celery_env,
                )
                for node, queue in WORKERS
            ),
            subprocess.Popen(
                [*celery, "beat", "-l", level, "-s", str(Path(settings.VAR_DIR) / "celerybeat-schedule")],
                env=celery_env,
            ),
        ]
        web = subprocess.Popen([python, "manage.py", "runserver", "--noreload", options["addrport"]], env=env)
        children.append(web)

        def stop(*_: Any) -> None:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        try:
            if options["show_credentials"]:
                self._show_credentials_when_up(options["addrport"], web, ready)
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
            shutil.rmtree(ready, ignore_errors=True)

    def _show_credentials_when_up(self, addrport: str, web: subprocess.Popen[bytes], ready: Path) -> None:
        """Wait until the web server answers and the workers and beat are up, then print the block."""
        url = f"http://{demo.browsable_addr(addrport)}/"
        deadline = time.monotonic() + READY_TIMEOUT
        up = [ready / f"worker-{node}" for node, _ in WORKERS] + [ready / "beat"]
        while web.poll() is None and time.monotonic() < deadline:
            if all(path.exists() for path in up) and _answers(url):
                break
            time.sleep(0.25)
        if web.poll() is not None:
            return  # it failed to start (address in use, ...): its own message says why
        time.sleep(0.3)  # runserver logs the probe's request after answering it: before the block
        path = demo.credentials_file()
        try:
            block = path.read_text()
        except FileNotFoundError:
            block = f"No {path}: run manage.py setup_demo for the demo's credentials.\n"
        self.stdout.write("\n" + block, ending="")
        self.stdout.flush()

"""Run the whole server on one machine: the web server, two Celery workers, celery beat and,
when the machine has Mosquitto, an MQTT broker of its own and the bridge (push, docs/mqtt.md).

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

from config import mosquitto
from config.metrics import reset_multiprocess_dir
from inventory import demo
from inventory.dynsec import Endpoint

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


#: The bridge between the broker and the server (``manage.py mqtt_bridge``), started when push is on.
BRIDGE_COMMAND = "mqtt_bridge"


def push_line(device_url: str | None, reason: str = "no mosquitto on this machine") -> str:
    """The one line saying whether devices get push (docs/mqtt.md)."""
    if device_url:
        return f"push: on, devices connect to {device_url}"
    return f"push: off ({reason}): devices poll over HTTP"


def start_push(env: dict[str, str]) -> tuple[mosquitto.Local | None, str]:
    """The broker of the run: the one ``MQTT_URL`` names if set, else a Mosquitto of its own under
    ``VAR_DIR/mosquitto`` when this machine has one (``MQTT_URL`` then set in ``env`` for the
    processes). Returns the broker started (to stop at the end) and the push line."""
    if env.get("MQTT_URL"):
        return None, push_line(Endpoint.parse(settings.MQTT_DEVICE_URL or env["MQTT_URL"]).public_url)
    if not mosquitto.available():
        return None, push_line(None)
    try:
        local = mosquitto.start_local(Path(settings.VAR_DIR))
    except mosquitto.MosquittoUnavailable as error:
        return None, push_line(None, f"mosquitto did not start: {str(error).splitlines()[0]}")
    env["MQTT_URL"] = local.broker.url
    return local, push_line(local.device_url)


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
        broker, push = start_push(env)
        if env.get("MQTT_URL"):
            celery_env["MQTT_URL"] = env["MQTT_URL"]
        if not options["show_credentials"]:
            self.stdout.write(push)
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
        if env.get("MQTT_URL"):
            children.append(subprocess.Popen([python, "manage.py", BRIDGE_COMMAND], env=env))
        web = subprocess.Popen([python, "manage.py", "runserver", "--noreload", options["addrport"]], env=env)
        children.append(web)

        def stop(*_: Any) -> None:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        try:
            if options["show_credentials"]:
                self._show_credentials_when_up(options["addrport"], web, ready, push)
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
            if broker is not None:
                mosquitto.stop_local(broker)

    def _show_credentials_when_up(
        self, addrport: str, web: subprocess.Popen[bytes], ready: Path, push: str
    ) -> None:
        """Wait until the web server answers and the workers and beat are up, then print the block
        and the push line under it (where it is seen, not scrolled away by the start-up lines)."""
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
        self.stdout.write("\n" + block + push + "\n", ending="")
        self.stdout.flush()

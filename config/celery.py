"""The Celery application: ``celery -A config worker`` and ``celery -A config beat``."""

import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _announce(name: str) -> None:
    """Create the file ``name`` in ``CELERY_READY_DIR``, if that is set.

    ``manage.py runstack`` sets it to learn when the workers and beat it started are up, so
    that what it prints then (the demo's credentials) comes after their start-up lines."""
    folder = os.environ.get("CELERY_READY_DIR")
    if folder:
        (Path(folder) / name).touch()


@worker_ready.connect
def _worker_ready(sender: Any = None, **_: Any) -> None:
    """``worker-<name>``, the node name before ``@``: runstack starts two workers (the default
    queue's and the webhooks queue's) and waits for both."""
    node = str(getattr(sender, "hostname", "") or "celery@")
    _announce(f"worker-{node.partition('@')[0]}")


@beat_init.connect
def _beat_ready(**_: Any) -> None:
    _announce("beat")

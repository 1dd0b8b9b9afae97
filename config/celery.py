"""The Celery application: ``celery -A config worker`` and ``celery -A config beat``."""

import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def _touch_ready_file(**_: Any) -> None:
    """Create ``CELERY_READY_FILE`` when the worker is ready to take tasks, if it is set.

    ``manage.py runstack`` sets it to learn when the worker it started is up, so that what it
    prints then (the demo's credentials) comes after the worker's start-up lines."""
    path = os.environ.get("CELERY_READY_FILE")
    if path:
        Path(path).touch()

"""The project's plumbing: settings, the WSGI/ASGI entry points and the Celery app.

It imports no app; the URLconf and the dashboard, which import every app, are in ``server/``.
"""

from config.celery import app as celery_app

__all__ = ("celery_app",)

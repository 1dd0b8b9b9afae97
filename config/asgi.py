"""ASGI entry point, for servers such as uvicorn.

Plumbing, like ``config/wsgi.py``: it imports no app of the project, only Django's
``get_asgi_application``; Django loads the apps and the URLconf (``server.urls``) by the names
in the settings.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_asgi_application()

"""WSGI entry point: ``gunicorn config.wsgi``, ``granian --interface wsgi config.wsgi:application``.

Plumbing, so it stays in ``config/`` (the ground floor) while the URLconf lives on the top floor,
``server/``: it imports no app of the project, only Django's ``get_wsgi_application``. Django
loads the apps and the URLconf by the names in the settings (``INSTALLED_APPS``,
``ROOT_URLCONF = "server.urls"``), not by an import here. Its path is fixed from outside too:
the conformance script (``../shared/conformance/run.sh``) runs ``gunicorn config.wsgi``.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()

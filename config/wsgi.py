"""WSGI entry point: ``gunicorn config.wsgi``, ``granian --interface wsgi config.wsgi:application``.

Plumbing, so it stays in ``config/`` (the ground floor) while the URLconf lives on the top floor,
``server/``: it imports no app of the project, only Django's ``get_wsgi_application``. Django
loads the apps and the URLconf by the names in the settings (``INSTALLED_APPS``,
``ROOT_URLCONF = "server.urls"``), not by an import here. Its path is fixed from outside too:
the conformance script (``../shared/conformance/run.sh``) runs ``gunicorn config.wsgi``.

The device's requests (the inbox poll, a device's status PUT) are answered by a lean handler in
front of the full one, in the same process (``config.lean``, issue 28): both servers run it.
"""

import os

from django.core.wsgi import get_wsgi_application

from config.lean import routed

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Django is set up (settings, apps) by the full application, then the router reads the settings.
application = routed(get_wsgi_application())

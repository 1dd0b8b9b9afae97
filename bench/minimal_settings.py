"""The ceiling of ``bench/inbox_load.py``'s device paths: Django with nothing of the project's in
front, served by the same server binary with the same options as the project.

``DJANGO_SETTINGS_MODULE=bench.minimal_settings`` under ``config.wsgi`` (which only calls
``get_wsgi_application``): no app of the project, no database, no cache, and of the middleware
only ``CommonMiddleware``; one view (``bench/minimal_urls.py``) answering a JSON body the size of
an empty inbox. A device path need not run the console's middleware at all (issue 28), so the
ceiling is what Django itself costs, not what the project's 15 middlewares cost
(``bench/settings.py``'s ``/bench/bare/``, still the ceiling of the console's pages).
"""

import os

SECRET_KEY = os.environ.get("SECRET_KEY", "bench-minimal-not-secret-0123456789abcdef0123456789")
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "bench.minimal_urls"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
TIME_ZONE = "UTC"

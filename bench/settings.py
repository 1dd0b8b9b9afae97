"""The project's settings with one extra URL, ``/bench/bare/``, for ``bench/inbox_load.py``.

``DJANGO_SETTINGS_MODULE=bench.settings``: everything as in ``config.settings`` (the same
middleware, database, cache), only ``ROOT_URLCONF`` adds a bare view, so the application
code is unchanged.
"""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.bare_urls"

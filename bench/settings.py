"""The project's settings with one extra URL, ``/bench/bare/``: the ceiling of the console's and
the API's pages in ``bench/lists.py`` and ``bench/console_scale.py`` (pages that do run the
project's middleware), and of ``bench/hot_paths.py``'s in-process rounds (one Django per process:
it cannot call a second, minimal one). Over HTTP the device paths of ``bench/inbox_load.py``
stand beside Django without the project's middleware (``bench/minimal_settings.py``).

``DJANGO_SETTINGS_MODULE=bench.settings``: everything as in ``config.settings`` (the same
middleware, database, cache), only ``ROOT_URLCONF`` adds a bare view, so the application
code is unchanged.
"""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.bare_urls"

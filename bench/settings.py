"""The project's settings with one extra URL, ``/bench/bare/``, the ceiling of the console's and
the API's pages in ``bench/lists.py``, ``bench/console_scale.py`` and ``bench/hot_paths.py``
(in process). The device paths of ``bench/inbox_load.py`` stand beside Django without the
project's middleware instead (``bench/minimal_settings.py``).

``DJANGO_SETTINGS_MODULE=bench.settings``: everything as in ``config.settings`` (the same
middleware, database, cache), only ``ROOT_URLCONF`` adds a bare view, so the application
code is unchanged.
"""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.bare_urls"

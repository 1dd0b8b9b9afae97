"""The static files (the console's CSS and scripts, Chart.js, Swagger UI) served by the web
process itself: WhiteNoise, with the files found by Django's finders (``WHITENOISE_USE_FINDERS``)
so that no collectstatic step or web server in front is needed.

Under gunicorn with ``DEBUG`` off nothing else serves ``/static/``: Django's staticfiles app does
only in ``runserver`` with ``DEBUG`` on. Without this the console had no CSS or scripts in
production and ``/api/docs/`` stayed blank.

WhiteNoise builds its table of files (a stat and headers per file, ~10 ms for the ~180 files)
every time a middleware chain is made: once per process in production, but once per test
client in the tests. The table is the same for the life of a process (the files are those of
the installed packages and ``static/``), so it is built once per process here.
"""

from __future__ import annotations

from typing import Any, ClassVar

from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise whose table of the finders' files is built once per process."""

    _found: ClassVar[dict[str, dict[str, Any]]] = {}  # by STATIC_URL's path: url -> WhiteNoise's file

    def add_files_from_finders(self) -> None:
        found = self._found.get(self.static_prefix)
        if found is None:
            before = dict(self.files)
            super().add_files_from_finders()
            found = {url: file for url, file in self.files.items() if before.get(url) is not file}
            self._found[self.static_prefix] = found
        self.files.update(found)

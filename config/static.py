"""The static files (the console's CSS and scripts, Chart.js, Swagger UI) served by the web
process itself: WhiteNoise, so that no web server in front is needed. In production
(``DEBUG`` off, after ``manage.py collectstatic``) from ``STATIC_ROOT``: gzip-compressed
copies, hashed names and a year's cache headers; otherwise from where Django's finders find
them (``WHITENOISE_USE_FINDERS``), so development needs no collectstatic step.

Under gunicorn with ``DEBUG`` off nothing else serves ``/static/``: Django's staticfiles app does
only in ``runserver`` with ``DEBUG`` on. Without this the console had no CSS or scripts in
production and ``/api/docs/`` stayed blank.

WhiteNoise builds its table of files (a stat and headers per file, ~10 ms for the ~180 files)
every time a middleware chain is made: once per process in production, but once per test
client in the tests. The table is the same for the life of a process (the files are those of
the installed packages and ``static/``, or of ``STATIC_ROOT``), so it is built once per
process here.
"""

from __future__ import annotations

from typing import Any, ClassVar

from whitenoise.middleware import WhiteNoiseMiddleware
from whitenoise.storage import CompressedManifestStaticFilesStorage


class CollectedOrFoundStorage(CompressedManifestStaticFilesStorage):
    """WhiteNoise's storage (collectstatic writes gzip copies, hashed names and a manifest),
    whose URLs fall back to the plain name of a file that was not collected: a server started
    before (or without) ``collectstatic`` still draws its pages, from the files the finders
    find, instead of answering 500 for a missing manifest entry."""

    manifest_strict = False
    # Only CSS is rewritten to name the hashed files it references. Django would also follow a
    # JS file's sourceMappingURL, and the vendored Chart.js names a map that is not shipped.
    patterns = tuple(
        (extension, rules)
        for extension, rules in CompressedManifestStaticFilesStorage.patterns
        if extension != "*.js"
    )

    def stored_name(self, name: str) -> str:
        if not self.hashed_files:  # nothing collected: the file as found
            return name
        try:
            return str(super().stored_name(name))
        except ValueError:  # a file added since the last collectstatic
            return name


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise whose table of files is built once per process."""

    _found: ClassVar[dict[str, dict[str, Any]]] = {}  # by STATIC_URL's path: url -> WhiteNoise's file
    _scanned: ClassVar[dict[tuple[str, str], dict[str, Any]]] = {}  # by (root, prefix), likewise

    def update_files_dictionary(self, root: str, prefix: str) -> None:
        key = (root, prefix)
        scanned = self._scanned.get(key)
        if scanned is None:
            before = dict(self.files)
            super().update_files_dictionary(root, prefix)
            scanned = {url: file for url, file in self.files.items() if before.get(url) is not file}
            self._scanned[key] = scanned
        self.files.update(scanned)

    def add_files_from_finders(self) -> None:
        found = self._found.get(self.static_prefix)
        if found is None:
            before = dict(self.files)
            super().add_files_from_finders()
            found = {url: file for url, file in self.files.items() if before.get(url) is not file}
            self._found[self.static_prefix] = found
        self.files.update(found)

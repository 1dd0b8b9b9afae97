"""The URLconf of the lean device path (``settings.DEVICE_URLCONF``, ``config.lean``): the
device's two paths, the very ``path()`` entries of the full URLconf (``commands.api.urls``), so
a request has the same view and route label (metrics, log line) whichever handler answers it.

:func:`serves` is the router's question, asked of the WSGI environ before Django makes a
request: the inbox's GET, and a PUT that the device's report view answers itself
(``device_report.served_here``, the view's own test); anything else at these URLs goes to the
full stack, as before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from commands.api import device_report
from commands.api.urls import device_urlpatterns

urlpatterns = device_urlpatterns

INBOX_PATH = "/v2/command-inbox/"
_STATUS_PATH = re.compile(r"/commands/v0/status/[0-9]+/")


def serves(environ: Mapping[str, Any]) -> bool:
    """Whether the lean device path answers this request (read from the environ only)."""
    path = environ.get("PATH_INFO", "")
    if path == INBOX_PATH:
        return str(environ.get("REQUEST_METHOD", "")).upper() == "GET"
    return _STATUS_PATH.fullmatch(path) is not None and device_report.served_here(environ)

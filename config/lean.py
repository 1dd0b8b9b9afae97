"""The lean device path: the device's requests answered by a short Django handler of their own.

Devices send most of the server's requests (the inbox poll, the status report), and each is
small: the console's middleware (sessions, CSRF, authentication, messages, the audit, django-axes,
the Content-Security-Policy, the static files) costs more than the work, and a device needs none
of it. :func:`routed` puts a router in front of the full WSGI application, in the same process:
a request the device URLconf serves (``settings.DEVICE_URLCONF``: its ``serves(environ)`` says,
from the environ alone, without reading the body) goes to a :class:`DeviceHandler` with
``settings.DEVICE_MIDDLEWARE`` and that URLconf; everything else to the full handler, as before.

Nothing is copied: the same views (the URLconf module reuses the full URLconf's device paths, with
their routes, so metrics and log lines carry the same route labels), the same middleware classes
(the request id and log line, the metrics, the security headers, ``CommonMiddleware``, the 503 of
an outage), Django's own handler class and middleware loading. The device's views themselves
send what they do not serve (an API key's PUT, an ``Idempotency-Key``, a body that is not JSON) to
the DRF view; the router keeps them out of the lean handler in the first place, so they keep every
middleware of the full stack (the audit of a key's write). ``tests/test_lean_path.py`` compares
both handlers' answers, headers included.

Plumbing, so it is in ``config/``: it names the device URLconf by the settings string only.
Both servers run it: ``gunicorn config.wsgi`` and ``granian --interface wsgi config.wsgi:application``
import ``config.wsgi.application``, which is :func:`routed`'s. ``LEAN_DEVICE_PATH=0`` turns it off.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest
from django.urls import ResolverMatch, get_resolver

#: A WSGI application.
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@contextlib.contextmanager
def _middleware(paths: list[str]) -> Iterator[None]:
    """``settings.MIDDLEWARE`` read as ``paths`` while a handler loads its chain: Django's own
    loading (its sync/async adaptation, ``MiddlewareNotUsed``), not a copy of it. Only while the
    WSGI module is imported, before any request is served, so no request sees the swap."""
    full = settings.MIDDLEWARE
    settings.MIDDLEWARE = paths
    try:
        yield
    finally:
        settings.MIDDLEWARE = full


class DeviceHandler(WSGIHandler):
    """Django's WSGI handler with ``DEVICE_MIDDLEWARE`` and the device URLconf.

    The URLconf is given to the resolver only (not set for the thread), so ``reverse()`` in a
    view still sees the project's whole URLconf, and a path the device URLconf does not hold
    (which the router never sends) would get the project's JSON 404."""

    def __init__(self, middleware: list[str], urlconf: str) -> None:
        self.resolver = get_resolver(urlconf)
        with _middleware(middleware):
            super().__init__()

    def resolve_request(self, request: HttpRequest) -> ResolverMatch:
        match = self.resolver.resolve(request.path_info)
        request.resolver_match = match
        return match


def routed(full: WSGIApp) -> WSGIApp:
    """``full`` with the device's requests answered by a :class:`DeviceHandler` first (unless
    ``LEAN_DEVICE_PATH`` is off)."""
    # A settings module without the project's device paths (the benches' minimal Django app,
    # served by this same entry point) has no lean path to route to.
    if not getattr(settings, "LEAN_DEVICE_PATH", False):
        return full
    urlconf = importlib.import_module(settings.DEVICE_URLCONF)
    serves: Callable[[Mapping[str, Any]], bool] = urlconf.serves
    lean = DeviceHandler(list(settings.DEVICE_MIDDLEWARE), settings.DEVICE_URLCONF)

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return (lean if serves(environ) else full)(environ, start_response)

    return application

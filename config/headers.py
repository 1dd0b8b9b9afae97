"""The Content-Security-Policy header (django-csp, policy in ``CONTENT_SECURITY_POLICY``), on
the pages a browser renders: the console and the docs.

django-csp builds the header anew for every answer, about 50 µs, a tenth of the device inbox's
304 (docs/performance.md). A policy governs a document; JSON answers (the API, the inbox) and
bodiless 304s are never rendered as one, and framing is refused for every answer already
(``X-Frame-Options: DENY``). So those skip it.
"""

from __future__ import annotations

from csp.middleware import CSPMiddleware
from django.http import HttpRequest
from django.http.response import HttpResponseBase


class PagePolicyMiddleware(CSPMiddleware):
    """django-csp's middleware for HTML answers only."""

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if response.status_code == 304 or not response.get("Content-Type", "").startswith("text/html"):
            return response
        return super().process_response(request, response)

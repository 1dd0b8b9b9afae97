"""``GET /metrics``: the Prometheus text of ``config.metrics``, for whoever runs the installation.

The figures are every tenant's together (counts only, but every tenant's traffic, operations
and queue show in them), so they are the installation's, not a tenant's (CONTRACT §8). The
view answers:

- ``Authorization: Bearer <METRICS_TOKEN>``, the setting, compared in constant time: what
  Prometheus sends;
- a superuser's console session (a browser logged in to ``/admin/``).

Anything else is refused: no credentials, an unknown token or a wrong ``METRICS_TOKEN`` 401;
a tenant's API key of any role, a device token, or a console user who is not a superuser 403
(``metrics_token_required``). With ``METRICS_TOKEN`` unset only the superuser's session reads
it. Not in the OpenAPI document: it is for Prometheus, not API clients.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from config import metrics


class MetricsScraper:
    """Who presented the installation's ``METRICS_TOKEN``: no tenant, no role, only the scrape."""

    is_authenticated = True
    is_anonymous = False


SCRAPER = MetricsScraper()


class MetricsTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <METRICS_TOKEN>``. Any other bearer token is left to the API's
    own authentication, which tells a tenant's key (then 403) from an unknown token (401)."""

    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[MetricsScraper, MetricsScraper] | None:
        expected = str(settings.METRICS_TOKEN)
        if not expected:
            return None
        header = get_authorization_header(request).split()
        if len(header) != 2 or header[0].lower() != self.keyword:
            return None
        # Digests of equal length, so the comparison's time says nothing of the token, its
        # length included.
        given = hashlib.sha256(header[1]).digest()
        if hmac.compare_digest(given, hashlib.sha256(expected.encode()).digest()):
            return SCRAPER, SCRAPER
        return None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="metrics"'


class InstallationOnly(BasePermission):
    """The installation's token, or a superuser; never a tenant's key, a device or other staff."""

    message = (
        "/metrics is the installation's (every tenant's figures together): scrape it with "
        "Authorization: Bearer <METRICS_TOKEN> or read it in a superuser's console session; "
        "a tenant's API key or a device token cannot read it."
    )
    code = "metrics_token_required"

    def has_permission(self, request: Request, view: Any) -> bool:
        if isinstance(request.auth, MetricsScraper):
            return True
        user = request.user
        return bool(getattr(user, "is_active", False) and getattr(user, "is_superuser", False))


@extend_schema(exclude=True)
class MetricsView(APIView):
    permission_classes = [InstallationOnly]

    def get_authenticators(self) -> list[BaseAuthentication]:
        """The installation's token first; then the API's own bearer authentication (the
        settings name it: this plumbing imports no app), so that a tenant's key is recognised
        and refused with 403 rather than 401; then the console's session, for a superuser."""
        return [MetricsTokenAuthentication(), *super().get_authenticators(), SessionAuthentication()]

    def get(self, request: Request) -> HttpResponse:
        body, content_type = metrics.exposition()
        return HttpResponse(body, content_type=content_type)

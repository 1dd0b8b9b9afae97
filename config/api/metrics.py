"""``GET /metrics``: the Prometheus text of ``config.metrics``, for an API key of any role.

Without a token 401; a device token 403 (``RolePermission``: the view does not allow device
tokens). The figures are the whole deployment's, every tenant's together (counts only, no
ids or names). Not in the OpenAPI document: it is for Prometheus, not API clients.
"""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request

from config import metrics
from config.api.views import TenantAPIView


@extend_schema(exclude=True)
class MetricsView(TenantAPIView):
    def get(self, request: Request) -> HttpResponse:
        body, content_type = metrics.exposition()
        return HttpResponse(body, content_type=content_type)

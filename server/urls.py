"""The URL map: the seeds' paths, the schema and docs, and the admin console.

The top floor (``ROOT_URLCONF``): it includes every app's URLs, so it lives above them in
``server/``, not in ``config/``, which imports no app.
"""

from django.contrib import admin
from django.http import HttpRequest, HttpResponsePermanentRedirect, JsonResponse
from django.templatetags.static import static
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

import config.api.schema  # noqa: F401  (registers the bearer scheme with drf-spectacular)
from config import health as probes
from config.api.metrics import MetricsView


def health(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers; the API itself lives under the versioned paths."""
    return JsonResponse({"status": "ok", "docs": "/api/docs/", "schema": "/api/schema/"})


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    """``/favicon.ico``, which browsers ask for on every page (a 404 each time before): the
    console's icon among the static files, no other host."""
    return HttpResponsePermanentRedirect(static("console/favicon.ico"))


# Any error Django catches outside a DRF view: JSON, and 503 when the database is down.
handler500 = "config.api.unavailable.server_error"

# A path no view matches answers the API's JSON 404 (config.api.exceptions.not_found).
handler404 = "config.api.exceptions.not_found"

urlpatterns = [
    path("", health, name="health"),
    # Liveness and readiness for orchestrators (config/health.py); no authentication.
    path("healthz", probes.healthz, name="healthz"),
    path("readyz", probes.readyz, name="readyz"),
    # Prometheus metrics (config/metrics.py): the installation's METRICS_TOKEN or a superuser's session.
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("favicon.ico", favicon, name="favicon"),
    # The device endpoints first: URLs are tried in order, and these carry most requests.
    path("", include("commands.api.urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI; its start-up script is a file of its own (/api/docs/?script=), not an inline
    # one, so the Content-Security-Policy can forbid inline scripts (config/settings.py).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    path("", include("inventory.api.urls")),
    path("", include("operations.api.urls")),
    path("", include("maintenance.api.urls")),
    path("", include("operations.api.headless_urls")),
]

"""The project's URLs plus ``/bench/bare/``: a Django view that answers ``{}``, the ceiling
of what a request through this project's middleware stack can do (see bench/settings.py)."""

from django.http import HttpRequest, JsonResponse
from django.urls import path

from server.urls import urlpatterns as project_urls


def bare(request: HttpRequest) -> JsonResponse:
    return JsonResponse({})


urlpatterns = [path("bench/bare/", bare), *project_urls]

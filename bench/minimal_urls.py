"""The one view of the minimal Django app (``bench/minimal_settings.py``): ``GET /bench/minimal/``
answers what an empty inbox answers, without its envelope, so the ceiling serves a body of the
same order of size as the polls it stands beside."""

from django.http import HttpRequest, JsonResponse
from django.urls import path

#: The path ``bench/inbox_load.py`` measures.
MINIMAL_PATH = "/bench/minimal/"


def empty_inbox(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"count": 0, "next": None, "previous": None, "results": [], "next_poll_seconds": 30})


urlpatterns = [path(MINIMAL_PATH.strip("/") + "/", empty_inbox)]

from django.urls import URLPattern, path
from rest_framework.routers import DefaultRouter

from commands.api import device_report
from commands.api.views import CommandStatusViewSet
from commands.inbox import command_inbox

app_name = "commands"

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("commands/v0/status", CommandStatusViewSet, basename="command-status")
_detail = next(
    route for route in router.urls if isinstance(route, URLPattern) and route.name == "command-status-detail"
)

# The device's paths first: URLs are tried in order, and devices send most requests. A
# device's PUT of a command's state is a plain view; every other request to that URL goes
# on to the DRF view, whose route (below) also documents the endpoint.
# The same two paths are the whole URLconf of the lean device path (``commands.api.device_urls``).
device_urlpatterns = [
    path("v2/command-inbox/", command_inbox, name="command-inbox"),
    path("commands/v0/status/<int:pk>/", device_report.detail_view(_detail.callback)),
]
urlpatterns = [*device_urlpatterns, *router.urls]

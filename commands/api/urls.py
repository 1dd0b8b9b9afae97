from django.urls import path
from rest_framework.routers import DefaultRouter

from commands.api.views import CommandStatusViewSet
from commands.inbox import command_inbox

app_name = "commands"

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("commands/v0/status", CommandStatusViewSet, basename="command-status")

# The inbox first: URLs are tried in order, and every device polls it.
urlpatterns = [
    path("v2/command-inbox/", command_inbox, name="command-inbox"),
    *router.urls,
]

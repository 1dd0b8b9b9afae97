from django.urls import path
from rest_framework.routers import DefaultRouter

from inventory.api.mqtt import MqttCredentialsView
from inventory.api.views import DeviceViewSet, GroupViewSet
from inventory.api.webhooks import WebhookEndpointViewSet

app_name = "inventory"

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("v0/devices", DeviceViewSet, basename="device")
router.register("v0/groups", GroupViewSet, basename="group")
router.register("v0/webhooks", WebhookEndpointViewSet, basename="webhook")

urlpatterns = [
    path("v2/mqtt-credentials/", MqttCredentialsView.as_view(), name="mqtt-credentials"),
    *router.urls,
]

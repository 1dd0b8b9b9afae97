from rest_framework.routers import DefaultRouter

from operations.api.headless import HeadlessOperationViewSet

app_name = "headless"

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register(
    "api/v1/inventory_device_headless_operation", HeadlessOperationViewSet, basename="headless-operation"
)

urlpatterns = router.urls

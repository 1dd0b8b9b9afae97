from django.urls import path
from rest_framework.routers import DefaultRouter

from operations.api.templates import OperationTemplateViewSet
from operations.api.views import ApprovalPolicyView, OperationViewSet

app_name = "operations"

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("v0/operations", OperationViewSet, basename="operation")
router.register("v0/operation-templates", OperationTemplateViewSet, basename="operation-template")

urlpatterns = [
    path("v0/approval-policy/", ApprovalPolicyView.as_view(), name="approval-policy"),
    *router.urls,
]

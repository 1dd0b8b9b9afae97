"""The console's approvals queue (contract section 13): what waits for a second admin, who
asked, when it expires, how many devices its query matches now and the first of them, with
Approve and Deny (a remark) for those who may decide.

Mixed into ``OperationAdmin`` so the queue is scoped like every other console screen (its
``get_queryset``). Every decision goes through ``operations.approvals``, the service the
API's ``approve`` and ``deny`` call, and the buttons are hidden by its own rule
(``approvals.may_decide``), so the console cannot offer what the service refuses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from commands.admin import console_time
from config.console.errors import REFUSALS, refusal_messages
from inventory.scoping import TenantScopedAdmin
from operations import admin_confirm, approvals, services
from operations.admin_confirm import Confirmation
from operations.choices import OperationState, OperationType
from operations.models import ApprovalPolicy, Operation

#: Waiting operations the queue shows, the soonest to expire first.
QUEUE_SHOWN = 50
#: Devices of each preview named on the page (the count says how many match in all).
PREVIEW_NAMED = 3


def console_decider(request: HttpRequest) -> approvals.Decider:
    """A console user as a principal (``user:<pk>``): an admin when a superuser or granted
    ``operations.approve_operation``."""
    user = request.user
    is_admin = bool(user.is_active and (user.is_superuser or user.has_perm("operations.approve_operation")))
    return approvals.Decider(f"user:{user.pk}", f"admin:{user.get_username()}", is_admin)


def console_requester(request: HttpRequest) -> str:
    return f"user:{request.user.pk}"


class ApprovalsQueueMixin:
    """The queue's page and its two buttons, for ``OperationAdmin``."""

    admin_site: Any
    model: type[Operation]

    if TYPE_CHECKING:  # the ModelAdmin's, scoped to the user's tenant

        def get_queryset(self, request: HttpRequest) -> Any: ...

        def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool: ...

    def approval_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("approvals/", wrap(self.approvals_view), name="operations_operation_approvals"),
            path(
                "<path:object_id>/approve/",
                wrap(require_POST(self.approve_view)),
                name="operations_operation_approve",
            ),
            path(
                "<path:object_id>/deny/", wrap(require_POST(self.deny_view)), name="operations_operation_deny"
            ),
        ]

    def waiting(self, request: HttpRequest) -> Any:
        return self.get_queryset(request).filter(state=OperationState.WAITING_FOR_APPROVAL)

    def approvals_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        decider = console_decider(request)
        waiting = self.waiting(request).select_related("tenant").order_by("approval_expires_at")
        rows = []
        for operation in waiting[:QUEUE_SHOWN]:
            try:
                count, sample = services.preview(operation.tenant_id, operation.device_query)
                preview: dict[str, Any] = {
                    "count": count,
                    "devices": [d.device_id for d in sample[:PREVIEW_NAMED]],
                }
            except REFUSALS as error:  # a group deleted since: say so, the admin decides anyway
                preview = {"count": None, "devices": [], "error": "; ".join(refusal_messages(error))}
            rows.append(
                {
                    "operation": operation,
                    "requested_at": console_time(operation.created_at),
                    "expires_at": console_time(operation.approval_expires_at),
                    "preview": preview,
                    "refusal": approvals.may_decide(operation, decider),
                }
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "Approvals",
            "opts": self.model._meta,
            "rows": rows,
            "total": waiting.count(),
            "shown": QUEUE_SHOWN,
        }
        return TemplateResponse(request, "admin/operations/operation/approvals.html", context)

    def _waiting_one(self, request: HttpRequest, object_id: str) -> Operation:
        operation = self.get_queryset(request).filter(pk=unquote(object_id)).first()
        if operation is None:
            raise Http404
        return operation

    def approve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        operation = self._waiting_one(request, object_id)
        try:
            approvals.approve(operation, console_decider(request), request.POST.get("remark", "").strip())
            messages.success(
                request,
                f"Approved {operation.get_operation_type_display()} operation {operation.pk}: it starts now.",
            )
        except REFUSALS as error:
            messages.error(request, "; ".join(refusal_messages(error)))
        return HttpResponseRedirect(reverse("admin:operations_operation_approvals"))

    def deny_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Deny, once confirmed (``operations.admin_confirm``): the page says how many devices
        the operation would have run on, and carries the remark."""
        operation = self._waiting_one(request, object_id)
        remark = request.POST.get("remark", "").strip()
        may = approvals.may_decide(operation, console_decider(request)) is None
        if may and remark and not admin_confirm.confirmed(request):
            try:
                matching = admin_confirm.devices_in_words(
                    services.preview(operation.tenant_id, operation.device_query)[0]
                )
            except REFUSALS as error:
                matching = "an unknown number of devices (" + "; ".join(refusal_messages(error)) + ")"
            confirmation = Confirmation(
                title=f"Deny {operation.get_operation_type_display()} operation {operation.pk}",
                lines=[
                    f"It matches {matching} now: none of them will run it.",
                    f"Asked by {operation.created_by}; the operation ends APPROVAL_DENIED with your remark: "
                    f"\u201c{remark}\u201d.",
                    "This cannot be undone (a new operation can be asked for).",
                ],
                button="Yes, deny it",
                action_url=request.path,
                back_url=reverse("admin:operations_operation_approvals"),
                hidden=[("remark", remark)],
            )
            return admin_confirm.render(request, self.admin_site.each_context(request), confirmation)
        try:
            approvals.deny(operation, console_decider(request), request.POST.get("remark", "").strip())
            messages.success(
                request, f"Denied {operation.get_operation_type_display()} operation {operation.pk}."
            )
        except REFUSALS as error:
            messages.error(request, "; ".join(refusal_messages(error)))
        return HttpResponseRedirect(reverse("admin:operations_operation_approvals"))


class ApprovalPolicyForm(forms.ModelForm):  # type: ignore[type-arg]
    """The four-eyes rule of a tenant, as ``PUT /v0/approval-policy/`` takes it: the types as
    check boxes, not a JSON list (``operations.approvals.set_policy`` writes it)."""

    operation_types = forms.MultipleChoiceField(
        choices=OperationType.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="operations of these types wait for a second admin's approval",
    )
    min_devices = forms.IntegerField(
        min_value=1,
        required=False,
        help_text="also hold any operation matching at least this many devices (empty: no threshold)",
    )
    expires_after_hours = forms.IntegerField(min_value=1, max_value=approvals.MAX_EXPIRES_AFTER_HOURS)

    class Meta:
        model = ApprovalPolicy
        fields = ["tenant", "operation_types", "min_devices", "expires_after_hours"]


class ApprovalPolicyAdmin(TenantScopedAdmin):
    """Settings → Approval policy: one row per tenant (a tenant without one has the default)."""

    form = ApprovalPolicyForm
    list_display = ["tenant", "types", "min_devices", "expires_after_hours", "updated_by"]
    readonly_fields = ["updated_by"]

    def _decides(self, request: HttpRequest) -> bool:
        """Changing who must approve is an approver's decision (the API's policy endpoint takes
        an admin key): model permissions alone would let a user who may not approve switch the
        four eyes off."""
        return console_decider(request).is_admin

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._decides(request) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._decides(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._decides(request) and super().has_delete_permission(request, obj)

    @admin.display(description="operation types held")
    def types(self, policy: ApprovalPolicy) -> str:
        return ", ".join(policy.operation_types) or "none"

    def save_model(self, request: HttpRequest, obj: ApprovalPolicy, form: Any, change: bool) -> None:
        """Through the service the API uses, so both write the same way (and the same row)."""
        data = form.cleaned_data
        approvals.set_policy(
            obj.tenant_id,
            list(data["operation_types"]),
            data["min_devices"],
            data["expires_after_hours"],
            f"admin:{request.user.get_username()}",
        )
        saved = ApprovalPolicy.objects.get(tenant_id=obj.tenant_id)
        obj.pk, obj.updated_by = saved.pk, saved.updated_by


admin.site.register(ApprovalPolicy, ApprovalPolicyAdmin)

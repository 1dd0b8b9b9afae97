"""The console's list and form of operation templates (contract section 12).

The form is checked by the API's serializer (``OperationTemplateSerializer``), so the console
refuses exactly what ``/v0/operation-templates/`` refuses, with the same words; a template's
page links to the new-operation form filled from it.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from config.console.errors import REFUSALS, refusal_messages
from inventory.scoping import TenantScopedAdmin
from operations.api.templates import OperationTemplateSerializer
from operations.models import OperationTemplate

#: The form's fields, as the API names them where it names them otherwise.
API_NAMES = {"device_query": "operation_device_query"}


class OperationTemplateForm(forms.ModelForm):
    class Meta:
        model = OperationTemplate
        fields = [
            "tenant",
            "name",
            "description",
            "operation_type",
            "arguments",
            "parameters",
            "device_query",
            "rollout",
            "schedule_type",
            "schedule_args",
        ]
        help_texts = {
            "arguments": 'JSON object; "{{name}}" is a parameter\'s value',
            "parameters": 'JSON: {"version": {"type": "string", "required": true}, '
            '"retries": {"type": "integer", "default": 3}}',
            "device_query": "JSON, as operation_device_query (optional)",
        }

    def clean(self) -> dict[str, Any] | None:
        """The API's serializer decides; its refusals go on the fields they name."""
        cleaned = super().clean() or {}
        tenant = cleaned.get("tenant")
        if tenant is None or self.errors:
            return cleaned
        data = {
            API_NAMES.get(name, name): cleaned.get(name)
            for name in self.Meta.fields
            if name != "tenant" and cleaned.get(name) is not None
        }
        instance = self.instance if self.instance.pk else None
        serializer = OperationTemplateSerializer(instance, data=data, context={"tenant_id": tenant.pk})
        try:
            serializer.is_valid(raise_exception=True)
        except REFUSALS as error:
            for line in refusal_messages(error):
                self.add_error(None, line)
            return cleaned
        for name, value in serializer.validated_data.items():
            if name in cleaned:
                cleaned[name] = value
        return cleaned


@admin.register(OperationTemplate)
class OperationTemplateAdmin(TenantScopedAdmin):
    form = OperationTemplateForm
    list_display = ["name", "tenant", "operation_type", "parameter_names", "updated_at", "use"]
    list_filter = ["operation_type", "tenant"]
    search_fields = ["name", "description"]
    readonly_fields = ["created_by", "updated_by", "created_at", "updated_at", "use"]

    @admin.display(description="parameters")
    def parameter_names(self, template: OperationTemplate) -> str:
        return ", ".join(sorted(template.parameters or {})) or "-"

    @admin.display(description="make an operation")
    def use(self, template: OperationTemplate) -> str:
        if template.pk is None:
            return "-"
        url = reverse("admin:operations_operation_add")
        return format_html('<a href="{}?template={}">new operation from it</a>', url, template.pk)

    def save_model(self, request: HttpRequest, obj: OperationTemplate, form: Any, change: bool) -> None:
        actor = f"admin:{request.user.get_username()}"
        if not change:
            obj.created_by = actor
        obj.updated_by = actor
        super().save_model(request, obj, form, change)

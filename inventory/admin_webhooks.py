"""Webhook endpoints in the console: add one (its secret shown once, on the one-time page API
keys use), event types as checkboxes, a test ping, the recent deliveries with their status
codes and a Redeliver button each, disabled endpoints marked. Every action calls
``inventory.webhooks.services``, as the API does."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from config.errors import DomainError
from inventory.admin import ShowsSecretsOnce, _adopt
from inventory.models import WebhookDelivery, WebhookEndpoint
from inventory.webhooks import services

#: Attempts listed on an endpoint's page (newest first); the API pages through all of them.
RECENT_DELIVERIES = 20


def _domain_message(error: DomainError, field: str) -> str:
    return "; ".join(error.errors.get(field, [])) or str(error)


class WebhookEndpointForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        choices=[(name, name) for name in services.SUBSCRIBABLE],
        widget=forms.CheckboxSelectMultiple,
        help_text='"*" is every type but command.state_changed, which a large fleet makes millions of.',
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["tenant", "url", "description", "events", "active"]

    def clean_url(self) -> str:
        url = str(self.cleaned_data["url"])
        try:
            return services.clean_url(url)
        except DomainError as error:
            raise forms.ValidationError(_domain_message(error, "url")) from None

    def clean_events(self) -> list[str]:
        try:
            return services.clean_events(list(self.cleaned_data["events"]))
        except DomainError as error:
            raise forms.ValidationError(_domain_message(error, "events")) from None


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ShowsSecretsOnce):
    form = WebhookEndpointForm
    list_display = ["url", "tenant", "subscribed", "state", "consecutive_failures", "created_at"]
    list_filter = ["active"]
    search_fields = ["url", "description"]
    change_form_template = "admin/inventory/webhookendpoint/change_form.html"

    def get_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> Any:
        fields = ["tenant", "url", "description", "events", "active"]
        if obj is None:
            return fields
        return [*fields, "state", "next_attempt_at", "recent_deliveries"]

    def get_readonly_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> Any:
        if obj is None:
            return []
        return ["tenant", "state", "next_attempt_at", "recent_deliveries"]

    @admin.display(description="events")
    def subscribed(self, endpoint: WebhookEndpoint) -> str:
        return ", ".join(endpoint.events)

    @admin.display(description="state")
    def state(self, endpoint: WebhookEndpoint) -> str:
        """Disabled endpoints are marked, with why and since when."""
        if endpoint.active:
            return format_html('<span class="{}">{}</span>', "webhook-active", "active")
        if endpoint.disabled_at is not None:
            return format_html(
                '<strong class="webhook-disabled">DISABLED</strong> since {} UTC: {}',
                endpoint.disabled_at.strftime("%Y-%m-%d %H:%M:%S"),
                endpoint.disabled_reason,
            )
        return format_html('<strong class="{}">{}</strong>', "webhook-disabled", "off")

    @admin.display(description="recent deliveries")
    def recent_deliveries(self, endpoint: WebhookEndpoint) -> str:
        rows = WebhookDelivery.objects.filter(endpoint=endpoint).order_by("-id")[:RECENT_DELIVERIES]
        if not rows:
            return "none yet"
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>"
            '<button type="submit" class="button" formmethod="post" formnovalidate formaction="{}">'
            "Redeliver</button></td></tr>",
            (
                (
                    d.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                    d.event_type,
                    f"evt_{d.event_id}",
                    d.attempt,
                    d.status_code if d.status_code is not None else "—",
                    d.error or ("delivered" if d.delivered else ""),
                    reverse("admin:inventory_webhookendpoint_redeliver", args=[endpoint.pk, d.pk]),
                )
                for d in rows
            ),
        )
        return format_html(
            '<table id="webhook-deliveries"><thead><tr><th>at (UTC)</th><th>event</th><th>webhook-id</th>'
            "<th>attempt</th><th>status</th><th>error</th><th></th></tr></thead><tbody>{}</tbody></table>",
            body,
        )

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/ping/",
                wrap(require_POST(self.ping_view)),
                name="inventory_webhookendpoint_ping",
            ),
            path(
                "<path:object_id>/rotate-secret/",
                wrap(require_POST(self.rotate_secret_view)),
                name="inventory_webhookendpoint_rotate_secret",
            ),
            path(
                "<path:object_id>/deliveries/<int:delivery_id>/redeliver/",
                wrap(require_POST(self.redeliver_view)),
                name="inventory_webhookendpoint_redeliver",
            ),
            *super().get_urls(),
        ]

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            services.update_endpoint(
                obj, {k: data[k] for k in ("url", "events", "description", "active") if k in data}
            )
            return
        endpoint, secret = services.create_endpoint(
            data["tenant"].pk,
            data["url"],
            data["events"],
            data.get("description", ""),
            data.get("active", True),
        )
        _adopt(obj, endpoint)
        obj.plain_secret = secret  # type: ignore[attr-defined]  # for response_add, this request only

    def response_add(
        self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue: str | None = None
    ) -> Any:
        secret = getattr(obj, "plain_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        messages.success(request, f"The webhook endpoint “{obj}” was added successfully.")
        return self.show_secrets_once(
            request,
            f"Signing secret of {obj.url}",
            [(obj.url, secret)],
            reverse("admin:inventory_webhookendpoint_change", args=[obj.pk]),
            "Copy the secret now and give it to the receiver's Standard Webhooks library: "
            "it is not shown again.",
        )

    def delete_model(self, request: HttpRequest, obj: WebhookEndpoint) -> None:
        services.delete_endpoint(obj)

    def _endpoint(self, request: HttpRequest, object_id: str) -> WebhookEndpoint:
        endpoint = self.get_object(request, unquote(object_id))
        if endpoint is None:
            raise Http404
        if not self.has_change_permission(request, endpoint):
            raise PermissionDenied
        return endpoint

    def _back(self, endpoint: WebhookEndpoint) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:inventory_webhookendpoint_change", args=[endpoint.pk]))

    def ping_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        endpoint = self._endpoint(request, object_id)
        try:
            services.ping(endpoint)
        except DomainError as error:
            messages.error(request, _domain_message(error, "active"))
        else:
            messages.success(
                request, "A webhook.ping event is on its way; its attempt shows below in a moment."
            )
        return self._back(endpoint)

    def rotate_secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        endpoint = self._endpoint(request, object_id)
        secret = services.rotate_secret(endpoint)
        return self.show_secrets_once(
            request,
            f"New signing secret of {endpoint.url}",
            [(endpoint.url, secret)],
            reverse("admin:inventory_webhookendpoint_change", args=[endpoint.pk]),
            "The old secret stopped signing. Copy the new one now: it is not shown again.",
        )

    def redeliver_view(self, request: HttpRequest, object_id: str, delivery_id: int) -> HttpResponse:
        endpoint = self._endpoint(request, object_id)
        delivery = WebhookDelivery.objects.filter(endpoint=endpoint, pk=delivery_id).first()
        if delivery is None:
            raise Http404
        try:
            services.redeliver(endpoint, delivery)
        except DomainError as error:
            messages.error(request, _domain_message(error, "delivery_id"))
        else:
            messages.success(request, f"evt_{delivery.event_id} will be sent again now.")
        return self._back(endpoint)

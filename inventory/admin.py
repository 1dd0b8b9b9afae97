"""The console screens for tenants, API keys, devices, groups and console users.

Every action calls ``inventory.services``, as the API does. A plain token or key never goes
into ``django.contrib.messages`` (its storage may be a cookie, and messages end up in logs
and screenshots). The view that makes it keeps it in the user's server-side session under a
random one-time id and redirects to ``…/secret/<id>/``, which shows it once, with a copy
button, and drops it; a second visit, another user or a page left unopened for
``SECRET_PAGE_TTL`` gets a page saying so.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from secrets import token_urlsafe
from typing import Any, TypedDict
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db import connection, transaction
from django.db.models import Count, Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from config.console.errors import REFUSALS, refusal_messages
from config.console.paging import EstimatedCountPaginator
from inventory import broker_logins, changes, device_files, services, tokens
from inventory.authentication import forget_token
from inventory.models import ApiKey, ConsoleUser, Device, Group, Tenant
from inventory.scoping import (
    SuperuserOnlyAdmin,
    TenantScopedAdmin,
    restrict_to_superusers,
    scope_of,
    scope_queryset,
)

#: Latest command statuses shown on a device's page (newest first).
#: Sections the floors above add to a device's page, each a function from the device to
#: HTML (``commands.admin`` adds the device's latest commands): this floor knows no commands.
DevicePanel = Callable[[Device], str]
device_panels: list[DevicePanel] = []
#: Rejected rows listed by the CSV import report; the count says how many there were.
IMPORT_ERRORS_SHOWN = 100
#: Keys or device tokens one rotate action renews; the rest of a larger selection is left as it
#: is (the message says so), which keeps the one-time page and the session small.
ROTATE_AT_ONCE = 50
#: How long a one-time page waits to be opened. The redirect opens it at once; one never opened
#: (a dropped connection) should not keep a plain key in the session table for the session's life.
SECRET_PAGE_TTL = dt.timedelta(minutes=10)
#: The session key under which one-time pages wait: {one-time id: PendingSecrets}.
PENDING_SECRETS = "console_secrets_once"


class PendingSecrets(TypedDict):
    """A one-time page kept in the session (JSON, as the session serializer wants it)."""

    user: int | None  # the pk of the user who made it (a console view: never None)
    model: str  # "app_label.model_name" of the admin whose URL shows it
    title: str
    note: str
    back: str
    secrets: list[list[str]]  # [what it is for, plain key or token]
    at: float  # POSIX time it was made


def _adopt(obj: Model, saved: Model) -> None:
    """Make the add form's unsaved instance the row a service created: Django's add view goes
    on with the instance it holds (the form's many-to-many fields, the log entry, the redirect),
    so that one must carry the service's primary key and fields."""
    for field in saved._meta.concrete_fields:
        setattr(obj, field.attname, getattr(saved, field.attname))
    obj._state.adding = False
    obj._state.db = saved._state.db


class ShowsSecretsOnce(TenantScopedAdmin):
    """A ModelAdmin whose views make plain keys or tokens: they hand them to
    :meth:`show_secrets_once`, which answers a redirect to a page that shows them once."""

    def get_urls(self) -> list[Any]:
        opts = self.opts
        return [
            path(
                "secret/<str:once_id>/",
                self.admin_site.admin_view(self.secret_view),
                name=f"{opts.app_label}_{opts.model_name}_secret",
            ),
            *super().get_urls(),
        ]

    def show_secrets_once(
        self, request: HttpRequest, title: str, secrets: list[tuple[str, str]], back: str, note: str
    ) -> HttpResponseRedirect:
        """Keep ``secrets`` (what each is for, the plain value) in the session for one visit of
        the redirect's target; nothing else keeps them."""
        if settings.SESSION_ENGINE == "django.contrib.sessions.backends.signed_cookies":
            # That session lives in the browser's cookie: the very place the secret must not go.
            raise ImproperlyConfigured("one-time pages of keys and tokens need a server-side SESSION_ENGINE")
        pending = _pending_secrets(request)
        once_id = token_urlsafe(24)
        pending[once_id] = PendingSecrets(
            user=request.user.pk,
            model=self.opts.label_lower,
            title=title,
            note=note,
            back=back,
            secrets=[[label, value] for label, value in secrets],
            at=timezone.now().timestamp(),
        )
        request.session[PENDING_SECRETS] = pending
        opts = self.opts
        return HttpResponseRedirect(
            reverse(f"admin:{opts.app_label}_{opts.model_name}_secret", args=[once_id])
        )

    def secret_view(self, request: HttpRequest, once_id: str) -> TemplateResponse:
        """The one-time page: shown once to the user who made it, then gone (410)."""
        pending = _pending_secrets(request)
        entry = pending.get(once_id)
        if entry is not None and entry["model"] == self.opts.label_lower:
            del pending[once_id]
            _keep_pending(request, pending)
            if request.user.pk is None or entry["user"] != request.user.pk:
                entry = None
        else:
            entry = None
        context: dict[str, Any] = {**self.admin_site.each_context(request), "opts": self.opts}
        if entry is None:
            context.update(
                title="Already shown or expired",
                gone=True,
                ttl_minutes=int(SECRET_PAGE_TTL.total_seconds() // 60),
                back_url=reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"),
            )
        else:
            context.update(
                title=entry["title"],
                note=entry["note"],
                back_url=entry["back"],
                secrets=[{"label": label, "value": value} for label, value in entry["secrets"]],
            )
        response = TemplateResponse(
            request, "admin/console/secret_once.html", context, status=410 if entry is None else 200
        )
        patch_cache_control(response, no_store=True, private=True)
        return response


def _pending_secrets(request: HttpRequest) -> dict[str, PendingSecrets]:
    """The session's one-time pages not yet expired; expired ones are dropped from the session."""
    stored: dict[str, PendingSecrets] = request.session.get(PENDING_SECRETS, {})
    oldest = (timezone.now() - SECRET_PAGE_TTL).timestamp()
    fresh = {once_id: entry for once_id, entry in stored.items() if entry["at"] > oldest}
    if len(fresh) != len(stored):
        _keep_pending(request, fresh)
    return fresh


def _keep_pending(request: HttpRequest, pending: dict[str, PendingSecrets]) -> None:
    if pending:
        request.session[PENDING_SECRETS] = pending
    else:
        request.session.pop(PENDING_SECRETS, None)


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)  # a tenant's staff cannot make other tenants

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)


@admin.register(ApiKey)
class ApiKeyAdmin(ShowsSecretsOnce):
    """A key is made and rotated here like anywhere else (the services); its plain value is
    shown once."""

    list_display = [
        "name",
        "tenant",
        "role",
        "key_prefix",
        "is_active",
        "created_at",
        "last_used_at",
        "expires_at",
    ]
    list_filter = ["role", "tenant", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke", "rotate"]
    change_form_template = "admin/inventory/apikey/change_form.html"

    @admin.display(description="key")
    def key_prefix(self, key: ApiKey) -> str:
        return f"{tokens.API_KEY_KIND}_{key.prefix}_…"

    @admin.display(boolean=True)
    def is_active(self, key: ApiKey) -> bool:
        return key.is_active

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is None:
            return ["tenant", "name", "role", "expires_at"]
        return ["tenant", "name", "role", "expires_at", "prefix", "created_at", "last_used_at", "revoked_at"]

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/revoke/",
                wrap(require_POST(self.revoke_view)),
                name="inventory_apikey_revoke",
            ),
            *super().get_urls(),
        ]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, plain = services.create_api_key(obj.tenant, obj.role, obj.name, expires_at=obj.expires_at)
        _adopt(obj, key)
        obj.plain_key = plain  # type: ignore[attr-defined]  # for response_add, this request only

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> Any:
        plain = getattr(obj, "plain_key", None)
        if plain is None:
            return super().response_add(request, obj, post_url_continue)
        messages.success(request, f"The API key “{obj}” was added successfully.")
        return self.show_secrets_once(
            request,
            f"New API key: {obj.name or obj.prefix} ({obj.role}, tenant {obj.tenant})",
            [(obj.name or obj.prefix, plain)],
            reverse("admin:inventory_apikey_changelist"),
            "Copy the key now: it is stored only as a hash and is not shown again.",
        )

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        key = self.get_object(request, unquote(object_id))
        if key is None:
            raise Http404
        if not self.has_change_permission(request, key):
            raise PermissionDenied
        services.revoke_api_key(key)
        messages.success(request, f"Revoked {key}.")
        return HttpResponseRedirect(reverse("admin:inventory_apikey_change", args=[key.pk]))

    @admin.action(
        description="Rotate the selected keys (new keys shown once; old ones revoked)", permissions=["change"]
    )
    def rotate(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> HttpResponse | None:
        active = queryset.filter(revoked_at__isnull=True)
        selected, rotatable = queryset.count(), active.count()
        renewed = []
        for key in active.select_related("tenant")[:ROTATE_AT_ONCE]:
            new_key, plain = services.rotate_api_key(key)
            renewed.append((f"{new_key.name or new_key.prefix} ({new_key.role}, tenant {key.tenant})", plain))
        if selected > rotatable:
            messages.info(request, f"Skipped {selected - rotatable} revoked key(s): make a new key instead.")
        if rotatable > len(renewed):
            messages.warning(
                request,
                f"Rotated {len(renewed)} of the {rotatable} selected keys (at most {ROTATE_AT_ONCE} at a "
                "time): select the rest and run the action again.",
            )
        if not renewed:
            return None
        return self.show_secrets_once(
            request,
            f"New API key{'s' if len(renewed) > 1 else ''}",
            renewed,
            reverse("admin:inventory_apikey_changelist"),
            "The old keys stopped working. Copy the new ones now: they are stored only as hashes "
            "and are not shown again.",
        )

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            services.revoke_api_key(key)
        messages.success(request, f"Revoked {queryset.count()} key(s).")


@admin.register(Group)
class GroupAdmin(TenantScopedAdmin):
    list_display = ["name", "tenant", "created_at"]
    list_filter = ["tenant"]
    search_fields = ["name"]


class DeviceImportForm(forms.Form):
    file = forms.FileField(
        help_text="CSV with a header row (id, name, serial, model, os, os_version, "
        "state, timezone, tags, groups; tags and groups separated by ';') or JSON lines."
    )
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.none())
    on_conflict = forms.ChoiceField(
        choices=[("error", "refuse the import if an id exists"), ("skip", "skip existing ids")],
        initial="error",
    )


def device_url(device: Device, view: str = "change", qualified: bool = False) -> str:
    """The console's address of a device's page by the device's own id (``…/device/kiosk-berlin-01/
    change/``), which operators read on the device and type, rather than the row's integer key.

    ``qualified`` puts the tenant's slug in front (``acme/kiosk-berlin-01``): a device id is
    unique only within a tenant, so a superuser needs it for an id two tenants use.
    """
    key = f"{device.tenant.slug}/{device.device_id}" if qualified else device.device_id
    return reverse(f"admin:inventory_device_{view}", args=[quote(key)])


def device_link(device: Device | None) -> str:
    """A link to a device's page, for the screens of other objects that name a device."""
    if device is None:
        return "-"
    return format_html('<a href="{}">{}</a>', device_url(device), device.device_id)


class DeviceChangeList(ChangeList):
    """The device list, each row linking to the device's page by its device id."""

    def url_for_result(self, result: Model) -> str:
        assert isinstance(result, Device)
        return device_url(result, qualified=result.device_id in self._shared_ids())

    def _shared_ids(self) -> set[str]:
        """Ids on this page that more than one tenant uses (only a superuser sees two tenants):
        those rows link with the tenant's slug. One query per page."""
        shared = getattr(self, "_shared", None)
        if shared is None:
            ids = {device.device_id for device in self.result_list}
            shared = self._shared = set(
                self.root_queryset.filter(device_id__in=ids)
                .values("device_id")
                .annotate(tenants=Count("tenant", distinct=True))
                .filter(tenants__gt=1)
                .values_list("device_id", flat=True)
            )
        return shared


class OsFilter(admin.SimpleListFilter):
    """The device list's OS filter, its values read by a loose index scan of (tenant, os).

    Django's field filter asks ``SELECT DISTINCT os`` of every device on every page of the
    list: a scan of a million rows, most of the list's time at a million devices (issue 17).
    A recursive query steps from one (tenant, os) pair to the next through the index instead,
    one probe per pair. Same parameter as the field filter (``os__exact``), so links keep working.
    """

    title = "os"
    parameter_name = "os__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        scope = scope_of(request)
        if scope.nothing:
            return []
        table = Device._meta.db_table
        only = "" if scope.everything else "WHERE tenant_id = %(tenant)s"
        also = "" if scope.everything else "AND d.tenant_id = %(tenant)s"
        sql = f"""
            WITH RECURSIVE pairs(tenant_id, os) AS (
                (SELECT tenant_id, os FROM {table} {only} ORDER BY tenant_id, os LIMIT 1)
                UNION ALL
                SELECT found.tenant_id, found.os FROM pairs, LATERAL (
                    SELECT d.tenant_id, d.os FROM {table} d
                    WHERE (d.tenant_id, d.os) > (pairs.tenant_id, pairs.os) {also}
                    ORDER BY d.tenant_id, d.os LIMIT 1
                ) found
            )
            SELECT DISTINCT os FROM pairs ORDER BY os
        """
        with connection.cursor() as cursor:
            cursor.execute(sql, {"tenant": scope.tenant_id})
            return [(os_name, os_name or "(empty)") for (os_name,) in cursor.fetchall()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset if value is None else queryset.filter(os=value)


@admin.register(Device)
class DeviceAdmin(ShowsSecretsOnce):
    list_display = ["device_id", "name", "tenant", "os", "model", "state", "timezone", "last_seen"]
    list_filter = ["state", OsFilter, "tenant", "token_revoked"]
    search_fields = ["device_id", "name", "serial"]
    readonly_fields = ["token_prefix", "last_seen", "created_at", "updated_at", "latest_commands"]
    exclude = ["token_hash"]
    filter_horizontal = ["groups"]
    actions = ["rotate_token", "revoke_token"]
    show_full_result_count = False  # an exact COUNT(*) of millions of devices on every page is too slow
    paginator = EstimatedCountPaginator  # the filtered count too, beyond COUNT_ESTIMATE_THRESHOLD
    change_form_template = "admin/inventory/device/change_form.html"
    change_list_template = "admin/inventory/device/change_list.html"

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("import/", wrap(self.import_view), name="inventory_device_import"),
            path(
                "<path:object_id>/rotate-token/",
                wrap(require_POST(self.rotate_token_view)),
                name="inventory_device_rotate_token",
            ),
            path(
                "<path:object_id>/revoke-token/",
                wrap(require_POST(self.revoke_token_view)),
                name="inventory_device_revoke_token",
            ),
            *super().get_urls(),
        ]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return DeviceChangeList

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        """The device whose page the URL names, among those the request's scope shows: by its
        device id (``kiosk-berlin-01``), by tenant slug and device id (``acme/kiosk-berlin-01``),
        or, for links made before device ids were used, by the integer key. An id that two of
        the scope's tenants use names no single device (:meth:`change_view` then lists them)."""
        if from_field is not None:
            return super().get_object(request, object_id, from_field)
        slug, _, device_id = object_id.rpartition("/")
        matches = self.get_queryset(request).filter(device_id=device_id)
        if slug:
            matches = matches.filter(tenant__slug=slug)
        found = list(matches[:2])
        if len(found) == 1:
            return found[0]
        if not found and object_id.isdigit():
            return super().get_object(request, object_id)
        return None

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        """An id several tenants use (a superuser's console) names no single device: say so and
        link each one, rather than answer that it does not exist."""
        device_id = unquote(object_id)
        same_id = list(self.get_queryset(request).filter(device_id=device_id).select_related("tenant")[:10])
        if len(same_id) < 2:
            return super().change_view(request, object_id, form_url, extra_context)
        links = format_html_join(
            ", ", '<a href="{}">{}</a>', ((device_url(d, qualified=True), d.tenant.slug) for d in same_id)
        )
        messages.warning(request, format_html("Several tenants have a device “{}”: {}.", device_id, links))
        listing = reverse("admin:inventory_device_changelist")
        return HttpResponseRedirect(f"{listing}?{urlencode({'q': device_id})}")

    @admin.display(description="latest commands")
    def latest_commands(self, device: Device) -> str:
        """What the floors above show on a device's page (``device_panels``)."""
        if device.pk is None:
            return "-"
        return format_html_join("", "{}", ((panel(device),) for panel in device_panels)) or "-"

    def save_model(self, request: HttpRequest, obj: Device, form: Any, change: bool) -> None:
        """A new device is made by the API's service (a blank name becomes the id, as there);
        its groups are then set by the form's many-to-many save, on the adopted instance."""
        if change:
            # A changed id or state changes its broker login: the old name before, the new after.
            login_changes = bool({"device_id", "state"} & set(form.changed_data))
            if login_changes:
                broker_logins.follow([obj.pk])
            super().save_model(request, obj, form, change)
            if login_changes:
                broker_logins.follow([obj.pk])
            changes.changed(obj.tenant_id)  # after commit: its groups are saved by then too
            return
        fields = {
            field.name: getattr(obj, field.attname)
            for field in Device._meta.concrete_fields
            if field.name in form.cleaned_data and field.name != "tenant"
        }
        device, plain = services.create_device(obj.tenant_id, fields)
        _adopt(obj, device)
        obj.plain_token = plain  # type: ignore[attr-defined]  # for response_add, this request only

    def response_add(self, request: HttpRequest, obj: Device, post_url_continue: str | None = None) -> Any:
        plain = getattr(obj, "plain_token", None)
        if plain is None:
            return super().response_add(request, obj, post_url_continue)
        messages.success(request, f"The device “{obj}” was added successfully.")
        return self.show_secrets_once(
            request,
            f"Device token of {obj.device_id}",
            [(obj.device_id, plain)],
            device_url(obj),
            "Copy the token now: it is stored only as a hash and is not shown again.",
        )

    def delete_model(self, request: HttpRequest, obj: Device) -> None:
        services.delete_device(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        prefixes = list(queryset.values_list("token_prefix", flat=True))
        with transaction.atomic():
            services.emit_deleted_devices(queryset)
            super().delete_queryset(request, queryset)
        for prefix in prefixes:
            forget_token(prefix)

    def _device_for_change(self, request: HttpRequest, object_id: str) -> Device:
        device = self.get_object(request, unquote(object_id))
        if device is None:
            raise Http404
        if not self.has_change_permission(request, device):
            raise PermissionDenied
        return device

    def rotate_token_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        device = self._device_for_change(request, object_id)
        token = services.rotate_device_token(device)
        return self.show_secrets_once(
            request,
            f"New device token of {device.device_id}",
            [(device.device_id, token)],
            reverse("admin:inventory_device_change", args=[object_id]),
            "The old token stopped working. Copy this one now: it is not shown again.",
        )

    def revoke_token_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        device = self._device_for_change(request, object_id)
        services.revoke_device_token(device)
        messages.success(request, f"Revoked the token of {device.device_id}.")
        return HttpResponseRedirect(reverse("admin:inventory_device_change", args=[object_id]))

    @admin.action(description="Rotate the device token (shows the new one once)", permissions=["change"])
    def rotate_token(self, request: HttpRequest, queryset: QuerySet[Device]) -> HttpResponse | None:
        selected = queryset.count()
        renewed = [
            (device.device_id, services.rotate_device_token(device)) for device in queryset[:ROTATE_AT_ONCE]
        ]
        if selected > len(renewed):
            messages.warning(
                request,
                f"Rotated the tokens of {len(renewed)} of the {selected} selected devices (at most "
                f"{ROTATE_AT_ONCE} at a time): select the rest and run the action again.",
            )
        if not renewed:
            return None
        return self.show_secrets_once(
            request,
            f"New device token{'s' if len(renewed) > 1 else ''}",
            renewed,
            reverse("admin:inventory_device_changelist"),
            "The old tokens stopped working. Copy the new ones now: they are stored only as hashes "
            "and are not shown again.",
        )

    @admin.action(description="Revoke the device token", permissions=["change"])
    def revoke_token(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        for device in queryset:
            services.revoke_device_token(device)
        messages.success(request, f"Revoked {queryset.count()} device token(s).")

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Upload a CSV or JSON lines file: validated like the API's bulk import, all or nothing."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        tenants = scope_queryset(Tenant.objects.all(), scope_of(request), "pk")
        form = DeviceImportForm(request.POST or None, request.FILES or None)
        form.fields["tenant"].queryset = tenants  # type: ignore[attr-defined]
        if tenants.count() == 1:
            form.fields["tenant"].initial = tenants.first()
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": "Import devices",
            "opts": self.model._meta,
            "form": form,
        }
        if request.method == "POST" and form.is_valid():
            context.update(self._import(form.cleaned_data))
        return TemplateResponse(request, "admin/inventory/device/import.html", context)

    def _import(self, data: dict[str, Any]) -> dict[str, Any]:
        try:
            text = data["file"].read().decode("utf-8-sig")
            rows = list(device_files.read_rows(io.StringIO(text, newline="")))
        except UnicodeDecodeError:
            return {"file_error": "the file is not UTF-8 text"}
        except device_files.DeviceFileError as error:
            return {"file_error": str(error)}
        if not rows:
            return {"file_error": "the file has no rows"}
        cleaned, errors = services.validate_device_rows(rows)
        if errors:
            rejected = []
            for where, problems in errors.items():
                if not where.startswith("rows["):
                    continue
                index = int(where[5:-1])
                raw = rows[index] if isinstance(rows[index], dict) else {}
                rejected.append(
                    {
                        "row": index + 1,
                        "id": raw.get("id") or raw.get("device_id") or "",
                        "problems": [
                            f"{field}: {'; '.join(map(str, msgs))}" for field, msgs in problems.items()
                        ],
                    }
                )
            return {
                "rejected": rejected[:IMPORT_ERRORS_SHOWN],
                "rejected_total": len(rejected),
                "truncated": "truncated" in errors,
                "row_total": len(rows),
            }
        try:
            result = services.bulk_import_devices(data["tenant"].pk, cleaned, on_conflict=data["on_conflict"])
        except REFUSALS as error:
            return {"file_error": "; ".join(refusal_messages(error))}
        return {
            "imported": len(result.created),
            "skipped": result.skipped,
            "tokens": "\n".join(f"{device_id},{token}" for device_id, token in result.created),
            "tenant": data["tenant"],
        }


@admin.register(ConsoleUser)
class ConsoleUserAdmin(SuperuserOnlyAdmin):
    """Which tenant each staff user of the console works for (superusers only)."""

    list_display = ["user", "tenant", "created_at"]
    list_filter = ["tenant"]
    search_fields = ["user__username", "tenant__slug"]
    autocomplete_fields = ["user"]


# Users, beat's tables and django-axes' login attempts span every tenant: superusers only.
restrict_to_superusers(admin.site, {"auth", "django_celery_beat", "axes"})

from inventory import admin_audit  # noqa: E402,F401

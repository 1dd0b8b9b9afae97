"""Tenant scoping of the console: a staff user sees their own tenant's objects, nothing else.

Every ModelAdmin of the project derives from :class:`TenantScopedAdmin` (or is superuser-only,
:class:`SuperuserOnlyAdmin`); ``tests/test_console_scoping.py`` walks the admin registry so a
new ModelAdmin cannot escape. The querysets of lists, change pages, actions and foreign key
choices all pass through :func:`scope_queryset`, as the API's querysets pass through
``ApiViewMixin.scope``. Both bases check an action's selected keys first
(:class:`config.console.actions.ActionKeysChecked`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import admin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from config.console.actions import ActionKeysChecked
from inventory.models import ConsoleUser, Tenant


@dataclass(frozen=True)
class Scope:
    """``tenant_id`` None with ``everything``: a superuser; None without it: sees nothing."""

    tenant_id: int | None
    everything: bool = False

    @property
    def nothing(self) -> bool:
        return not self.everything and self.tenant_id is None


def scope_of(request: HttpRequest) -> Scope:
    """The request's scope, looked up once per request."""
    cached = getattr(request, "_console_scope", None)
    if isinstance(cached, Scope):
        return cached
    user = request.user
    if user.is_active and user.is_superuser:
        scope = Scope(None, everything=True)
    else:
        tenant_id = (
            ConsoleUser.objects.filter(user_id=user.pk).values_list("tenant_id", flat=True).first()
            if user.is_authenticated
            else None
        )
        scope = Scope(tenant_id)
    request._console_scope = scope  # type: ignore[attr-defined]
    return scope


def tenant_lookup(model: type[models.Model]) -> str | None:
    """The path from a model to its tenant, or None when the model has no tenant."""
    if issubclass(model, Tenant):
        return "pk"
    names = {field.name for field in model._meta.get_fields()}
    return "tenant" if "tenant" in names else None


def scope_queryset(queryset: QuerySet[Any], scope: Scope, lookup: str | None) -> QuerySet[Any]:
    if scope.everything:
        return queryset
    if scope.nothing or lookup is None:
        return queryset.none()
    field = "pk" if lookup == "pk" else f"{lookup}_id"
    return queryset.filter(**{field: scope.tenant_id})


class TenantScopedAdmin(ActionKeysChecked):
    """The base of every ModelAdmin of the project.

    ``tenant_field`` is the path from the model to its tenant (``"pk"`` for Tenant itself,
    ``"job__tenant"`` through a relation); by default it is found from the model.
    """

    tenant_field: str | None = None

    def get_tenant_field(self) -> str | None:
        return self.tenant_field or tenant_lookup(self.model)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return scope_queryset(super().get_queryset(request), scope_of(request), self.get_tenant_field())

    def has_module_permission(self, request: HttpRequest) -> bool:
        return not scope_of(request).nothing and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not scope_of(request).nothing and super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not scope_of(request).nothing and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not scope_of(request).nothing and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not scope_of(request).nothing and super().has_delete_permission(request, obj)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        return _scoped_choices(field, db_field, request)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        return _scoped_choices(field, db_field, request)

    def get_list_filter(self, request: HttpRequest) -> Any:
        """A tenant filter would list every tenant's name: only superusers get it."""
        filters = super().get_list_filter(request)
        if scope_of(request).everything:
            return filters
        return [f for f in filters if not _is_tenant_filter(f)]

    def get_list_display(self, request: HttpRequest) -> Any:
        columns = super().get_list_display(request)
        if scope_of(request).everything:
            return columns
        return [c for c in columns if c != "tenant"]

    def console_tenant_id(self, request: HttpRequest) -> int | None:
        """The tenant a non-superuser acts for (None for a superuser)."""
        return scope_of(request).tenant_id


def _scoped_choices(field: Any, db_field: Any, request: HttpRequest) -> Any:
    queryset = getattr(field, "queryset", None)
    if queryset is None:
        return field
    lookup = tenant_lookup(db_field.related_model)
    if lookup is not None:
        field.queryset = scope_queryset(queryset, scope_of(request), lookup)
    return field


def _is_tenant_filter(item: Any) -> bool:
    name = item[0] if isinstance(item, tuple | list) else item
    return isinstance(name, str) and (name == "tenant" or name.endswith("__tenant"))


class SuperuserOnlyAdmin(ActionKeysChecked):
    """Screens that are not one tenant's (users, beat's tables): superusers only."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self.has_module_permission(request) and super().has_add_permission(request, *args)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)


def restrict_to_superusers(site: admin.AdminSite, app_labels: set[str]) -> None:
    """Re-register the admins of other packages' models (auth, django_celery_beat) superuser-only:
    a user list or beat's task list spans every tenant."""
    for model, model_admin in list(site._registry.items()):
        if model._meta.app_label not in app_labels or isinstance(model_admin, SuperuserOnlyAdmin):
            continue
        cls = type(model_admin)
        site.unregister(model)
        site.register(model, type(f"SuperuserOnly{cls.__name__}", (SuperuserOnlyAdmin, cls), {}))

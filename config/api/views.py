"""The base of every API view: tenant scoping, roles, envelopes.

Every view derives from :class:`TenantScopedViewSet` or :class:`TenantAPIView`. Their
querysets pass through :meth:`ApiViewMixin.scope`, which filters by the caller's tenant
(and, for a device token, by the device), so no view filters by tenant by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import DatabaseError
from django.db.models import QuerySet
from rest_framework import viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import idempotency
from config.api.envelopes import DEFAULT_ENVELOPE, Envelope
from config.api.principal import Principal

#: Told of every answer of the API after it is made: ``(request, view, response, url kwargs)``.
#: The floors above register here in their ``AppConfig.ready`` (the audit log of
#: ``inventory``), so this plumbing imports no app.
ResponseObserver = Callable[[Request, Any, Any, dict[str, Any]], None]
response_observers: list[ResponseObserver] = []


class ApiViewMixin:
    envelope: Envelope = DEFAULT_ENVELOPE
    #: Whether a device token may call this view at all (reads and PUT only).
    allow_device_tokens = False
    #: The path from the view's model to its tenant, e.g. ``"tenant"`` or ``"operation__tenant"``.
    tenant_field = "tenant"

    request: Any  # a DRF Request at run time; Any keeps mypy from fighting View's HttpRequest

    @property
    def principal(self) -> Principal:
        principal = self.request.auth
        assert isinstance(principal, Principal), "authentication runs before any view code"
        return principal

    @property
    def tenant_id(self) -> int:
        return self.principal.tenant_id

    def scope(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        queryset = queryset.filter(**{f"{self.tenant_field}_id": self.tenant_id})
        if self.principal.is_device:
            queryset = self.scope_to_device(queryset, self.principal)
        return queryset

    def scope_to_device(self, queryset: QuerySet[Any], principal: Principal) -> QuerySet[Any]:
        """Narrow to what one device may see; views that allow device tokens override this."""
        raise PermissionDenied("A device token cannot reach this endpoint.")

    #: The POST holding an idempotency key while its view runs (``config.api.idempotency``).
    _idempotency: idempotency.Guard | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """After authentication and the role check: a POST with an ``Idempotency-Key``
        claims it here (or answers from the store), so every POST honours the header."""
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        if request.method in ("POST", "PUT", "PATCH", "DELETE"):
            self._idempotency = idempotency.begin(request, self.principal)

    def handle_exception(self, exc: Exception) -> Any:
        if isinstance(exc, idempotency.Replay):
            return exc.response
        return super().handle_exception(exc)  # type: ignore[misc]

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
        finally:
            # Only when an error escaped the exception handler (DEBUG): roll back, free the key.
            if self._idempotency is not None:
                self._idempotency.abort()
                self._idempotency = None

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        if (
            isinstance(response, Response)
            and not getattr(response, "enveloped", False)
            and 200 <= response.status_code < 300
            and response.status_code != 204
        ):
            response.data = self.envelope.success(
                response.data, response.status_code, getattr(response, "envelope_message", None)
            )
            response.enveloped = True  # type: ignore[attr-defined]
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        guard, self._idempotency = self._idempotency, None
        if guard is not None:
            # Before the observers: the kept answer commits with the view's work, and the
            # audit entry of a refused request is not rolled back with it.
            refusal: Exception | None = None
            try:
                if not guard.finish(response):
                    refusal = idempotency.claim_lost()
            except DatabaseError as error:
                refusal = error
            if refusal is not None:
                response = super().finalize_response(  # type: ignore[misc]
                    request, self.handle_exception(refusal), *args, **kwargs
                )
        for observe in response_observers:
            observe(request, self, response, kwargs)
        return response


class TenantScopedViewSet(ApiViewMixin, viewsets.GenericViewSet):
    """A model viewset whose queryset is always the caller's tenant's rows."""

    def get_queryset(self) -> QuerySet[Any]:
        return self.scope(super().get_queryset())

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """List filters apply to lists only: a lookup by id does not build and validate the
        filter form (a quarter of a GET's time, bench/fanout.py)."""
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)


class TenantAPIView(ApiViewMixin, APIView):
    """A plain view for endpoints that are not one model's CRUD."""

"""Recording the audit log (:class:`inventory.models.AuditEntry`), in these places only:

- every unsafe API request by an API key, in ``ApiViewMixin.finalize_response`` (refused
  ones too: a 403 or 404 on a write is worth knowing about);
- every POST to the console by a signed-in user, by :class:`ConsoleAuditMiddleware`;
- and one row the system writes itself: an approval that expired undecided
  (``operations.approvals.expire``, ``actor_kind`` ``system``), a decision nobody's request made.

Device tokens' writes (status reports) are not recorded: see ``AuditEntry``. A failure to
record is logged and never fails the request it describes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse

from config.api.principal import Principal
from config.client import client_address
from inventory.models import AuditEntry

logger = logging.getLogger(__name__)

SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}


def _client(request: HttpRequest) -> tuple[str | None, str]:
    # Behind proxies, X-Forwarded-For as far as TRUSTED_PROXY_COUNT says (config/client.py).
    return client_address(request), request.META.get("HTTP_USER_AGENT", "")


def _text(value: str, limit: int) -> str:
    """PostgreSQL refuses NUL in text, and a request path or header may carry one."""
    return value.replace("\x00", "\\x00")[:limit]


def record(request: HttpRequest, status_code: int, **fields: Any) -> None:
    ip, agent = _client(request)
    for name, limit in (("actor", 200), ("object_type", 100), ("object_id", 200)):
        fields[name] = _text(str(fields.get(name) or ""), limit)
    try:
        with transaction.atomic():  # a savepoint: a failure here leaves the caller's transaction usable
            AuditEntry.objects.create(
                method=_text(request.method or "", 8),
                path=_text(request.get_full_path(), 500),
                status_code=status_code,
                ip=ip,
                user_agent=_text(agent, 300),
                **fields,
            )
    except DatabaseError:
        logger.exception("could not record the audit entry of %s %s", request.method, request.path)


def record_api_write(request: Any, view: Any, response: Any, url_kwargs: dict[str, Any]) -> None:
    """Called by the API's base view for every answer; records writes by API keys."""
    principal = getattr(request, "auth", None)
    if request.method in SAFE_METHODS or not isinstance(principal, Principal) or principal.is_device:
        return
    if getattr(view, "action", None) in getattr(view, "read_only_actions", ()):
        return  # a POST that changes nothing (operations preview)
    model = getattr(getattr(view, "queryset", None), "model", None)
    object_id = next((str(v) for v in url_kwargs.values() if v is not None), "")
    if not object_id and 200 <= response.status_code < 300:
        object_id = _created_id(response.data)
    record(
        request._request if hasattr(request, "_request") else request,
        response.status_code,
        tenant_id=principal.tenant_id,
        actor_kind=AuditEntry.ActorKind.KEY,
        actor=principal.label[:200],
        key_id=principal.key_id,
        object_type=model._meta.label if model is not None else type(view).__name__,
        object_id=object_id[:200],
    )


def _created_id(data: Any) -> str:
    for body in (data, data.get("content") if isinstance(data, dict) else None):
        if isinstance(body, dict):
            for name in ("id", "job_id"):
                if body.get(name) is not None:
                    return str(body[name])
    if isinstance(data, dict) and isinstance(data.get("response"), dict):
        return str(data["response"].get("job_id") or "")
    return ""


class ConsoleAuditMiddleware:
    """Records each POST under ``/admin/`` made by a signed-in user (forms, actions, buttons)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.method == "POST" and request.path.startswith("/admin/"):
            user = getattr(request, "user", None)
            if user is not None and user.is_authenticated:
                self._record(request, response, user)
        return response

    def _record(self, request: HttpRequest, response: HttpResponse, user: Any) -> None:
        parts = [p for p in request.path.removeprefix("/admin/").split("/") if p]
        object_type = ".".join(parts[:2]) if len(parts) >= 2 else "/".join(parts)
        object_id = parts[2] if len(parts) >= 3 and parts[2] not in {"add"} else ""
        if not object_id and request.POST.getlist("_selected_action"):
            action = request.POST.get("action", "")
            object_id = f"{action}: " + ",".join(request.POST.getlist("_selected_action"))
        console = getattr(user, "console", None)
        record(
            request,
            response.status_code,
            tenant_id=getattr(console, "tenant_id", None),
            actor_kind=AuditEntry.ActorKind.CONSOLE,
            actor=user.get_username()[:200],
            user_id=user.pk,
            object_type=object_type[:100],
            object_id=object_id[:200],
        )

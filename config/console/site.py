"""The console's admin site: the dashboard (``CONSOLE_DASHBOARD``) on the index page."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.module_loading import import_string


class ConsoleAdminSite(admin.AdminSite):
    site_header = "Device operations console"
    site_title = "Device operations"
    index_title = "Fleet dashboard"

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        # Named in settings (CONSOLE_DASHBOARD): the dashboard reads every app's models, and
        # this plumbing imports no app.
        dashboard = import_string(settings.CONSOLE_DASHBOARD)
        context = {**dashboard(request), **(extra_context or {})}
        return super().index(request, context)

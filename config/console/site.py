"""The console's admin site: the dashboard on the index page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse


class ConsoleAdminSite(admin.AdminSite):
    site_header = "Device operations console"
    site_title = "Device operations"
    index_title = "Fleet dashboard"

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        from config.console.dashboard import dashboard  # imports the apps' models

        context = {**dashboard(request), **(extra_context or {})}
        return super().index(request, context)

"""The console's admin site: the dashboard (``CONSOLE_DASHBOARD``) on the index page, the
sidebar and index by the operator's tasks (``CONSOLE_NAVIGATION``, ``config.console.navigation``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.module_loading import import_string

from config.console.navigation import arrange


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

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[Any]:
        """By task (the sidebar, the index); one app's page (``/admin/<app>/``) stays Django's."""
        app_list = super().get_app_list(request, app_label)
        if app_label is not None:
            return app_list
        return arrange(app_list, import_string(settings.CONSOLE_NAVIGATION), request.get_full_path())

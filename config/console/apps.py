"""The admin app with the console's site (dashboard, tenant scoping) as ``admin.site``."""

from django.contrib.admin.apps import AdminConfig


class ConsoleAdminConfig(AdminConfig):
    default_site = "config.console.site.ConsoleAdminSite"

"""The top floor as a Django app: installed so that its management command (``runstack``) is found."""

from django.apps import AppConfig


class ServerConfig(AppConfig):
    name = "server"
    verbose_name = "Server: the URL root, the dashboard, runstack"

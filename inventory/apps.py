from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "inventory"
    verbose_name = "Inventory: tenants, keys, devices"

    def ready(self) -> None:
        from config.api import views
        from inventory import admin_webhooks  # noqa: F401  # registers its ModelAdmin (it extends inventory.admin's)
        from inventory.audit import record_api_write
        from inventory.broker_logins import register_sender
        from inventory.tasks import sync_broker_logins

        # The audit log records every write an API key makes through the API's base view.
        if record_api_write not in views.response_observers:
            views.response_observers.append(record_api_write)
        # Device changes reach the broker's logins through a task, queued after commit.
        register_sender(sync_broker_logins.delay)

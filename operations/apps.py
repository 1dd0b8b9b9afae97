from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "operations"

    def ready(self) -> None:
        from commands import followers
        from operations.settlement import OperationSettlement

        # A command of an operation moved: its counters and state follow (one explicit hook,
        # called by the delivery floor in the mover's statement or transaction).
        followers.register(OperationSettlement())

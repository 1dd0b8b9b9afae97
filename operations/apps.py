from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "operations"

    def ready(self) -> None:
        from commands import followers
        from config import metrics
        from inventory import changes
        from operations import continuous
        from operations.gate import RolloutGate
        from operations.metrics import operations_by_state
        from operations.settlement import OperationSettlement

        # A command of an operation moved: its counters and state follow (one explicit hook,
        # called by the delivery floor in the mover's statement or transaction).
        followers.register(OperationSettlement())
        # The inbox hands out nothing of a paused or stopped operation, of a wave not open
        # yet, or past a rollout's rate (in the hand-out's own statement).
        followers.register_gate(RolloutGate())
        # Devices changed (created, imported, edited, grouped): continuous operations look now.
        changes.register(continuous.nudge)
        # GET /metrics reads the operations by state at scrape time (one GROUP BY).
        if operations_by_state not in metrics.scrape_collectors:
            metrics.scrape_collectors.append(operations_by_state)

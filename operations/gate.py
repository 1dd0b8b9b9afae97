"""What the inbox may hand out of an operation: the operations floor's hand-out gate.

Registered in ``OperationsConfig.ready`` with ``commands.followers.register_gate``. Three
rules, given to ``commands`` as data (``HandOutRule``), which puts the first two inside the
hand-out's single SQL statement (a join on the operation's primary key, no extra round trip):

- an operation PAUSED or stopped (``HOLDING_STATES``) hands out nothing, from the moment
  its state commits;
- a rollout's command waits until its operation's ``current_wave`` reaches its ``wave``;
- a rollout's ``max_per_minute`` holds across every web process and machine: each handed-out
  command is admitted in a sliding 60-second window kept in the shared cache (Redis: one
  Lua script, no database round trip), and what does not fit goes back to the queue. An
  operation found full is remembered in this process until a place frees, so its commands
  are not even picked meanwhile; the poll's answer then says "not cacheable", so the device
  is not told "nothing new" for longer than its poll interval. While the cache cannot be
  reached the window cannot be counted, and its commands are held back (the rate is a
  promise to the operator: failing open could hand a whole fleet its download at once).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

from django.core.cache import cache

from commands.followers import HandOutRule
from config.cache import RETRY_SECONDS, degraded
from config.errors import CacheUnavailable
from operations.choices import HOLDING_STATES
from operations.models import Operation

#: The window of ``max_per_minute``.
WINDOW_SECONDS = 60.0


def rate_key(operation_id: Any) -> str:
    return f"rollout:rate:{operation_id}"


def handed_out_last_minute(operation_id: Any) -> int | None:
    """How many of the operation's commands were handed out in the last 60 s (every process);
    None while the cache cannot be read (an operation's answer is not refused for it)."""
    try:
        return int(cache.admitted(rate_key(operation_id), WINDOW_SECONDS))  # type: ignore[attr-defined]
    except CacheUnavailable:
        degraded("rollout_rate_read", "rollouts' handed_out_last_minute shows null")
        return None


class RolloutGate:
    """Holds back commands of paused or stopped operations, of waves not open yet, and past a
    rollout's rate."""

    def __init__(self) -> None:
        #: Operations whose window was full when this process last asked: id → when it frees.
        self._full_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def _full_now(self) -> list[str]:
        now = time.time()
        with self._lock:
            for operation_id in [k for k, until in self._full_until.items() if until <= now]:
                del self._full_until[operation_id]
            return list(self._full_until)

    def hand_out_rule(self) -> HandOutRule:
        return HandOutRule(
            table=Operation._meta.db_table,
            key="id",
            state_column="state",
            holding_states=tuple(sorted(int(state) for state in HOLDING_STATES)),
            frontier_column="current_wave",
            rate_column="max_per_minute",
            held_back=tuple(self._full_now()),
        )

    def admit(self, rows: list[dict[str, Any]]) -> set[int]:
        """Admit the rate-limited rows in their operations' windows; the ids that do not fit."""
        limited: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            if row.get("rate") is not None:
                limited[(str(row["operation_id"]), int(row["rate"]))].append(row)
        back: set[int] = set()
        for (operation_id, rate), group in limited.items():
            group.sort(key=lambda row: (-row["priority"], row["id"]))
            members = [f"{row['id']}:{row['version']}" for row in group]
            try:
                admitted, full_until = cache.admit(rate_key(operation_id), members, rate, WINDOW_SECONDS)  # type: ignore[attr-defined]
            except CacheUnavailable:
                # All back to the queue, and none picked in this process until the cache is tried again.
                degraded("rollout_rate", "commands of rollouts with max_per_minute are held back")
                admitted, full_until = 0, time.time() + RETRY_SECONDS
            back.update(row["id"] for row in group[admitted:])
            if full_until:
                with self._lock:
                    self._full_until[operation_id] = full_until
        return back

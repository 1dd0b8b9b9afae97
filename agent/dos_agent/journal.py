"""What the agent must not forget across a restart, kept on disk with atomic writes.

One small JSON file per device (``<state_dir>/state.json``):

- ``current``: the command being worked on and its phase: ``received`` (written before its
  acknowledgement, the handler not started) or ``running`` (the handler started, ``runs``
  times so far). A restart resumes it (``agent.DeviceAgent.resume``).
- ``outbox``: reports not yet acknowledged by the server, oldest first. A command's final
  report is appended in the same write that clears ``current``, so an outcome is never lost
  between the two; a restart sends the outbox again first (a repeat is a no-op on the server).
- ``finished``: the last :data:`FINISHED_KEPT` (command id, attempt) pairs done and their
  final state: a command handed out again (at-least-once delivery) is reported, not re-run.
- ``etag``: the inbox's last ETag, so that the first poll after a restart can be a 304.

Every save writes a temporary file in the same folder, fsyncs it and renames it over the old
one (``os.replace`` is atomic on POSIX): a crash leaves the old state or the new, never half.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FINISHED_KEPT = 200
FILE_NAME = "state.json"


@dataclass
class Report:
    """One status report: the body of ``PUT /commands/v0/status/{id}/`` (or of an MQTT update)."""

    command_id: str
    state: str
    reason: str = ""
    details: dict[str, Any] | None = None
    attempt: int | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"state": self.state, "reason": self.reason}
        if self.details is not None:
            body["details"] = self.details
        if self.attempt is not None:
            body["attempt"] = self.attempt
        return body


@dataclass
class Job:
    """The command in hand: its status object as handed out, phase and handler runs so far."""

    command: dict[str, Any]
    phase: str = "received"
    runs: int = 0

    @property
    def key(self) -> str:
        return finished_key(self.command)


def finished_key(command: dict[str, Any]) -> str:
    """A command's delivery: its id and attempt (a rollout's retry is a new attempt to run)."""
    return f"{command['id']}#{command.get('attempt') or 1}"


@dataclass
class AgentState:
    current: Job | None = None
    outbox: list[Report] = field(default_factory=list)
    finished: dict[str, str] = field(default_factory=dict)
    etag: str | None = None

    def finish(self, key: str, final_state: str) -> None:
        self.finished[key] = final_state
        while len(self.finished) > FINISHED_KEPT:
            del self.finished[next(iter(self.finished))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "current": None if self.current is None else vars(self.current),
            "outbox": [vars(report) for report in self.outbox],
            "finished": self.finished,
            "etag": self.etag,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentState:
        current = data.get("current")
        return cls(
            current=Job(**current) if current else None,
            outbox=[Report(**report) for report in data.get("outbox", [])],
            finished=dict(data.get("finished", {})),
            etag=data.get("etag"),
        )


class Journal:
    """The state of one device: on disk under ``folder``, or in memory when ``folder`` is None
    (the simulator's virtual devices, which have nothing to resume)."""

    def __init__(self, folder: Path | None) -> None:
        self.path = None if folder is None else folder / FILE_NAME
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        self.state = self._load()

    def _load(self) -> AgentState:
        if self.path is None or not self.path.exists():
            return AgentState()
        return AgentState.from_dict(json.loads(self.path.read_text()))

    def save(self) -> None:
        if self.path is None:
            return
        temporary = self.path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        with temporary.open("w") as out:
            json.dump(self.state.to_dict(), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a power cut
        finally:
            os.close(folder)

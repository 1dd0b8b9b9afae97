"""The reference device agent (``agent/``, package ``dos_agent``) run as the real program
against a real server: a ``dos-agent run`` or ``dos-agent simulate`` subprocess, its log, and
the server it talks to (gunicorn with a real Celery worker, ``tests/conftest.py``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, DeviceActor, Org, kill_group, wait_until

OPS = "/v0/operations/"


class AgentProcess:
    """``python -m dos_agent <args>`` in a session of its own, logging to ``log``."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dos_agent", "--log-level", "INFO", *args],
                cwd=ROOT,  # the Python handlers of tests/agent_handlers.py import from here
                env={**os.environ, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        kill_group(self.process, signal.SIGTERM, timeout=15)

    def kill(self) -> None:
        """SIGKILL, as a power cut would: no handler of signals, no last write."""
        kill_group(self.process, signal.SIGKILL, timeout=15)


def run_agent(url: str, actor: DeviceActor, workdir: Path, *flags: str, **env: str) -> AgentProcess:
    """``dos-agent run`` for ``actor`` (its token through ``DOS_AGENT_TOKEN``), its journal under
    ``workdir/state``, polling only unless ``flags`` say otherwise."""
    args = [
        "run",
        "--server",
        url,
        "--device-id",
        actor.device.device_id,
        "--state-dir",
        str(workdir / "state"),
        "--start-jitter",
        "0",
        "--max-backoff",
        "2",
        *flags,
    ]
    return AgentProcess(args, workdir / "agent.log", {"DOS_AGENT_TOKEN": actor.token, **env})


def create_operation(org: Org, operation_type: str, query: dict[str, Any], **fields: Any) -> str:
    created = org.admin.post(
        OPS, {"operation_type": operation_type, "operation_device_query": query, **fields}
    )
    assert created.status_code == 201, created.content
    return str(created.json()["content"]["id"])


def operation(org: Org, operation_id: str) -> dict[str, Any]:
    return dict(org.admin.get(f"{OPS}{operation_id}/").json()["content"])


def counts(shown: dict[str, Any]) -> dict[str, int]:
    return dict(shown["operation_stats"]["device_operation_statuses_count"])


def wait_finished(org: Org, operation_id: str, *logs: Any, timeout: float = 90) -> dict[str, Any]:
    """The operation once it is SUCCESS or FAILURE (the processes' logs in the failure message)."""

    def finished() -> dict[str, Any] | None:
        shown = operation(org, operation_id)
        return shown if shown["state"] in ("SUCCESS", "FAILURE") else None

    def tails() -> str:
        return "\n".join(log()[-3000:] for log in logs)

    try:
        return dict(wait_until(finished, timeout=timeout, interval=0.3, what=f"operation {operation_id}"))
    except AssertionError as late:
        raise AssertionError(f"{late}\n{tails()}") from None


def only_command(org: Org, operation_id: str) -> dict[str, Any]:
    """The one command status of a one-device operation."""
    found = org.admin.get("/commands/v0/status/", {"request": operation_id}).json()["content"]["results"]
    assert len(found) == 1, found
    return dict(found[0])

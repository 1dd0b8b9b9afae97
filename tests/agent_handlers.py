"""Python handlers the agent tests configure (``--python-handler TYPE=tests.agent_handlers:NAME``):
they run inside the ``dos-agent`` process, which imports them from the repository's root."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: The file each handler writes what it was given to (set by the test in the agent's env).
OUT = "AGENT_TEST_OUT"


def record(command: dict[str, Any]) -> dict[str, Any]:
    """Succeeds: writes the command it got to ``$AGENT_TEST_OUT``; its return is the details."""
    Path(os.environ[OUT]).write_text(json.dumps(command))
    return {"recorded": command["id"]}


def refuse(command: dict[str, Any]) -> None:
    """Fails: its exception's message is the report's reason."""
    raise RuntimeError(f"cannot install {command['arguments'].get('package')}")

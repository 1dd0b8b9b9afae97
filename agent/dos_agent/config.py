"""The agent's configuration: a TOML or JSON file, then command-line flags over it.

A file (``--config agent.toml``)::

    server = "http://127.0.0.1:8000"
    device_id = "kiosk-berlin-01"
    token = "ddt_..."
    state_dir = "/var/lib/dos-agent"
    unhandled = "fail"            # or "succeed" (demos): what an unconfigured type gets

    [handlers.REBOOT]
    shell = "systemctl reboot"
    timeout = 120
    resume = "succeed"            # killed while running it: the reboot happened

    [handlers.INSTALL_APP]
    python = "my_device.handlers:install_app"

    [handlers.NOTIFY_DEVICE]
    entry_point = "notify"        # group "dos_agent.handlers" of an installed package

Flags (``--server``, ``--device-id``, ``--token``, ``--state-dir``, ``--handler
TYPE=COMMAND``, ``--python-handler TYPE=module:function``, ``--unhandled``) win over the file.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

HandlerKind = Literal["shell", "python", "entry_point", "succeed", "fail"]
#: What a restart does with a command whose handler was running when the agent died.
Resume = Literal["rerun", "succeed", "fail"]
RESUMES: tuple[str, ...] = ("rerun", "succeed", "fail")
DEFAULT_TIMEOUT = 600.0


class ConfigError(ValueError):
    """A configuration that cannot work, said in one line."""


@dataclass(frozen=True)
class HandlerSpec:
    """How to run one operation type: ``kind`` and its ``target`` (a shell command, a
    ``module:function``, an entry point's name; empty for ``succeed`` / ``fail``)."""

    kind: HandlerKind
    target: str = ""
    timeout: float = DEFAULT_TIMEOUT
    resume: Resume = "rerun"


@dataclass
class AgentConfig:
    server: str = ""
    device_id: str = ""
    token: str = ""
    state_dir: Path | None = None
    handlers: dict[str, HandlerSpec] = field(default_factory=dict)
    #: The handler of a type with none configured: ``fail`` ("no handler for X") or ``succeed``.
    unhandled: HandlerSpec = field(default_factory=lambda: HandlerSpec("fail"))
    #: Use MQTT when the server offers it (``--no-mqtt``: poll only).
    mqtt: bool = True
    #: The first poll waits a random time up to this, so that a fleet restarted at once spreads out.
    start_jitter: float = 5.0
    #: The longest wait between two tries after network errors.
    max_backoff: float = 300.0
    #: Report ``Command In Progress`` before running a handler (one more write per command).
    report_in_progress: bool = True
    #: A command interrupted by this many restarts in a row fails instead of running again.
    max_interrupted_runs: int = 3

    def handler_for(self, command_type: str) -> HandlerSpec:
        return self.handlers.get(command_type, self.unhandled)

    def state_path(self) -> Path:
        """Where this device's state lives: ``state_dir``, else the user's state folder."""
        if self.state_dir is not None:
            return self.state_dir
        base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        return base / "dos-agent" / self.device_id

    def check(self) -> None:
        missing = [name for name in ("server", "device_id", "token") if not getattr(self, name)]
        if missing:
            raise ConfigError(f"missing {', '.join(missing)} (a flag or the config file)")


def read_file(path: Path) -> dict[str, Any]:
    """A config file as a dict: JSON for ``.json``, TOML otherwise."""
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as bad:
        raise ConfigError(f"{path}: {bad}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table / an object")
    return data


def handler_spec(name: str, raw: Any) -> HandlerSpec:
    """One ``[handlers.TYPE]`` table: exactly one of ``shell``, ``python``, ``entry_point``,
    ``succeed = true``, ``fail = true``; optional ``timeout`` (seconds) and ``resume``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"handlers.{name}: must be a table")
    kinds = [k for k in ("shell", "python", "entry_point", "succeed", "fail") if k in raw]
    if len(kinds) != 1:
        raise ConfigError(f"handlers.{name}: give exactly one of shell, python, entry_point, succeed, fail")
    kind = cast(HandlerKind, kinds[0])
    target = raw[kind] if kind in ("shell", "python", "entry_point") else ""
    if not isinstance(target, str) or (kind in ("shell", "python", "entry_point") and not target):
        raise ConfigError(f"handlers.{name}.{kind}: must be a non-empty string")
    if kind == "python" and ":" not in target:
        raise ConfigError(f"handlers.{name}.python: must be module:function, got {target!r}")
    timeout = raw.get("timeout", DEFAULT_TIMEOUT)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise ConfigError(f"handlers.{name}.timeout: must be a positive number of seconds")
    resume = raw.get("resume", "rerun")
    if resume not in RESUMES:
        raise ConfigError(f"handlers.{name}.resume: must be one of {', '.join(RESUMES)}")
    return HandlerSpec(kind, target, float(timeout), cast(Resume, resume))


def unhandled_spec(value: Any) -> HandlerSpec:
    if value not in ("fail", "succeed"):
        raise ConfigError(f"unhandled: must be 'fail' or 'succeed', got {value!r}")
    return HandlerSpec(cast(HandlerKind, value))


def from_mapping(data: dict[str, Any]) -> AgentConfig:
    """An :class:`AgentConfig` from a config file's contents."""
    config = AgentConfig()
    for name in ("server", "device_id", "token"):
        if name in data:
            setattr(config, name, str(data[name]))
    if "state_dir" in data:
        config.state_dir = Path(str(data["state_dir"]))
    handlers = data.get("handlers", {})
    if not isinstance(handlers, dict):
        raise ConfigError("handlers: must be a table of operation types")
    config.handlers = {name: handler_spec(name, raw) for name, raw in handlers.items()}
    if "unhandled" in data:
        config.unhandled = unhandled_spec(data["unhandled"])
    for name in ("mqtt", "report_in_progress"):
        if name in data:
            setattr(config, name, bool(data[name]))
    for name in ("start_jitter", "max_backoff"):
        if name in data:
            setattr(config, name, float(data[name]))
    if "max_interrupted_runs" in data:
        config.max_interrupted_runs = int(data["max_interrupted_runs"])
    return config


def parse_assignment(text: str, flag: str) -> tuple[str, str]:
    """``TYPE=VALUE`` of a ``--handler`` / ``--python-handler`` flag."""
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise ConfigError(f"{flag}: expected TYPE=VALUE, got {text!r}")
    return name, value

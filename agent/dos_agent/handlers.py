"""Running one command: a shell command, a Python callable, or a fixed answer.

A handler's outcome is :class:`Outcome`: Success or Failure with a reason and details, which
become the final report. What each kind does:

- **shell**: ``sh -c COMMAND`` with the command status as JSON on stdin and as environment
  variables (:func:`command_env`). Exit code 0 is Success, anything else Failure with the tail
  of stderr as the reason; past its timeout the process group is killed and it fails.
- **python** / **entry_point**: ``function(command)`` with the command status as a dict. A
  return is Success (a returned ``str`` is the reason, a ``dict`` the details, an
  :class:`Outcome` is taken as it is); an exception is Failure with its message as the reason.
  A coroutine function is awaited; a plain one runs in a thread so that the agent keeps
  reporting. Past its timeout the command fails (a thread cannot be killed: it is left to end).
- **succeed** / **fail**: no code runs; ``fail`` says "no handler for X" (the default for a
  type with no handler), ``succeed`` is for demos and load tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import os
import re
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from dos_agent.config import HandlerSpec

#: The entry point group of installed handlers (``entry_point = "name"`` in the config).
ENTRY_POINT_GROUP = "dos_agent.handlers"
#: How much of a process's output goes into a report (the server caps text fields).
TAIL_CHARS = 500


@dataclass(frozen=True)
class Outcome:
    success: bool
    reason: str = ""
    details: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"success": self.success, "reason": self.reason, "details": self.details}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Outcome:
        return cls(bool(data["success"]), str(data.get("reason") or ""), data.get("details"))


def tail(text: str, limit: int = TAIL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def _env_name(key: str) -> str:
    return "DOS_ARG_" + re.sub(r"[^A-Za-z0-9]", "_", key).upper()


def command_env(command: Mapping[str, Any], device_id: str) -> dict[str, str]:
    """The variables a shell handler gets besides the agent's own environment:
    ``DOS_COMMAND_ID``, ``DOS_COMMAND_TYPE``, ``DOS_OPERATION_ID``, ``DOS_DEVICE_ID``,
    ``DOS_ATTEMPT``, ``DOS_ARGUMENTS`` (JSON) and ``DOS_ARG_<KEY>`` for each argument (a string
    as it is, anything else as JSON)."""
    arguments = command.get("arguments") or {}
    env = {
        "DOS_COMMAND_ID": str(command.get("id", "")),
        "DOS_COMMAND_TYPE": str(command.get("command", "")),
        "DOS_OPERATION_ID": str(command.get("request", "")),
        "DOS_DEVICE_ID": device_id,
        "DOS_ATTEMPT": str(command.get("attempt") or 1),
        "DOS_ARGUMENTS": json.dumps(arguments),
    }
    if isinstance(arguments, dict):
        for key, value in arguments.items():
            env[_env_name(str(key))] = value if isinstance(value, str) else json.dumps(value)
    return env


#: What a handler never sees of the agent's environment: the device's token is the agent's
#: alone (a handler script, and whatever it starts, could leak it).
PRIVATE_ENV = frozenset({"DOS_AGENT_TOKEN"})


def handler_environ() -> dict[str, str]:
    """The agent's environment minus :data:`PRIVATE_ENV`, for a shell handler."""
    return {key: value for key, value in os.environ.items() if key not in PRIVATE_ENV}


async def run_shell(spec: HandlerSpec, command: Mapping[str, Any], device_id: str) -> Outcome:
    process = await asyncio.create_subprocess_shell(
        spec.target,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**handler_environ(), **command_env(command, device_id)},
        start_new_session=True,  # its own process group: a timeout kills its children too
    )
    try:
        out, err = await asyncio.wait_for(
            process.communicate(json.dumps(dict(command)).encode()), timeout=spec.timeout
        )
    except TimeoutError:
        _kill(process.pid)
        await process.wait()
        return Outcome(False, f"timed out after {spec.timeout:g} s", {"timeout_seconds": spec.timeout})
    except asyncio.CancelledError:  # the agent stops: no orphan (the journal resumes the command)
        _kill(process.pid)
        raise
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    details = {"exit_code": process.returncode, "stdout": tail(stdout), "stderr": tail(stderr)}
    if process.returncode == 0:
        return Outcome(True, "", details)
    return Outcome(False, tail(stderr) or f"exit code {process.returncode}", details)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def load_callable(spec: HandlerSpec) -> Callable[..., Any]:
    """The function a ``python`` (``module:function``) or ``entry_point`` spec names."""
    if spec.kind == "entry_point":
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec.target]
        if not found:
            raise LookupError(f"no entry point {spec.target!r} in group {ENTRY_POINT_GROUP}")
        loaded: Any = found[0].load()
    else:
        module_name, _, attribute = spec.target.partition(":")
        loaded = importlib.import_module(module_name)
        for part in attribute.split("."):
            loaded = getattr(loaded, part)
    if not callable(loaded):
        raise TypeError(f"{spec.target} is not callable")
    return loaded  # type: ignore[no-any-return]


def _outcome_of(result: Any) -> Outcome:
    if isinstance(result, Outcome):
        return result
    if isinstance(result, str):
        return Outcome(True, result)
    if isinstance(result, dict):
        return Outcome(True, "", result)
    return Outcome(True)


async def run_callable(function: Callable[..., Any], spec: HandlerSpec, command: dict[str, Any]) -> Outcome:
    try:
        if inspect.iscoroutinefunction(function):
            result = await asyncio.wait_for(function(command), timeout=spec.timeout)
        else:
            result = await asyncio.wait_for(asyncio.to_thread(function, command), timeout=spec.timeout)
    except TimeoutError:
        return Outcome(False, f"timed out after {spec.timeout:g} s", {"timeout_seconds": spec.timeout})
    except Exception as raised:  # the handler's failure is the command's, not the agent's
        return Outcome(False, tail(f"{type(raised).__name__}: {raised}"))
    return _outcome_of(result)


class Handlers:
    """The handlers of one agent, by operation type; callables are imported once."""

    def __init__(self, specs: Mapping[str, HandlerSpec], unhandled: HandlerSpec) -> None:
        self.specs = dict(specs)
        self.unhandled = unhandled
        self._loaded: dict[str, Callable[..., Any]] = {}

    def spec_for(self, command_type: str) -> HandlerSpec:
        return self.specs.get(command_type, self.unhandled)

    async def run(self, command: dict[str, Any], device_id: str) -> Outcome:
        command_type = str(command.get("command", ""))
        spec = self.spec_for(command_type)
        if spec.kind == "succeed":
            return Outcome(True, "succeeded without a handler (unhandled = succeed)")
        if spec.kind == "fail":
            return Outcome(False, f"no handler for {command_type}")
        if spec.kind == "shell":
            return await run_shell(spec, command, device_id)
        try:
            function = self._loaded.get(command_type) or load_callable(spec)
        except Exception as broken:
            return Outcome(False, tail(f"handler {spec.target} cannot be loaded: {broken}"))
        self._loaded[command_type] = function
        return await run_callable(function, spec, command)

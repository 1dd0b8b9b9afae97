"""Many virtual devices in one process (``dos-agent simulate``), for load tests and demos.

Each virtual device is a :class:`~dos_agent.agent.DeviceAgent` like the real one (the same
polling, MQTT, reports and retries) with a journal in memory and a simulated handler: it waits
a random delay and succeeds with the given ratio. They share one HTTP connection pool; each has
its own MQTT session when the server offers MQTT.

Where the devices' tokens come from:

- ``--tokens-file F``: lines ``device_id token`` (``#`` comments allowed), e.g. the file
  ``--write-tokens`` made on an earlier run;
- ``--api-key K --devices N``: an admin or operator key creates devices ``{prefix}00000`` ...
  through ``POST /v0/devices/bulk/?on_conflict=skip`` (their tokens are in the answer) and
  rotates the token of those that existed already (``POST /v0/devices/{id}/rotate-token/``):
  a token is shown only when it is made.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dos_agent.agent import DeviceAgent
from dos_agent.config import AgentConfig, HandlerSpec
from dos_agent.handlers import Outcome
from dos_agent.http_api import DeviceApi, content
from dos_agent.journal import Journal

BULK_CHUNK = 10_000


def read_tokens(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{number}: expected 'device_id token'")
        pairs.append((parts[0], parts[1]))
    return pairs


async def make_devices(
    client: httpx.AsyncClient, server: str, api_key: str, count: int, prefix: str
) -> list[tuple[str, str]]:
    """``count`` devices of the key's tenant and a fresh token for each (see the module's doc)."""
    headers = {"Authorization": f"Bearer {api_key}"}
    server = server.rstrip("/")
    ids = [f"{prefix}{i:05d}" for i in range(count)]
    tokens: dict[str, str] = {}
    for start in range(0, count, BULK_CHUNK):
        chunk = ids[start : start + BULK_CHUNK]
        answer = await client.post(
            f"{server}/v0/devices/bulk/",
            params={"on_conflict": "skip"},
            json=[{"id": device_id} for device_id in chunk],
            headers=headers,
            timeout=300,
        )
        answer.raise_for_status()
        tokens.update({d["id"]: d["token"] for d in content(answer)["devices"]})
    for device_id in ids:
        if device_id not in tokens:
            answer = await client.post(f"{server}/v0/devices/{device_id}/rotate-token/", headers=headers)
            answer.raise_for_status()
            tokens[device_id] = content(answer)["token"]
    return [(device_id, tokens[device_id]) for device_id in ids]


class SimulatedRunner:
    """Every operation type: wait ``delay`` (a range, seconds), succeed with ``success_ratio``."""

    def __init__(self, delay: tuple[float, float], success_ratio: float, rng: random.Random) -> None:
        self.delay = delay
        self.success_ratio = success_ratio
        self.rng = rng

    def spec_for(self, command_type: str) -> HandlerSpec:
        return HandlerSpec("python", "simulated", resume="rerun")

    async def run(self, command: dict[str, Any], device_id: str) -> Outcome:
        await asyncio.sleep(self.rng.uniform(*self.delay))
        if self.rng.random() < self.success_ratio:
            return Outcome(True, "simulated")
        return Outcome(False, "injected failure (simulate --success-ratio)")


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (``share`` in 0..1) of ``values``; None if there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(share * len(ordered)))) - 1]


@dataclass
class Summary:
    """The simulator's :class:`~dos_agent.agent.Observer`: what ended, and how fast."""

    expect: int | None = None
    states: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    last_done: float = field(default_factory=time.monotonic)
    enough: asyncio.Event = field(default_factory=asyncio.Event)

    def command_done(self, device_id: str, final_state: str, latency: float | None) -> None:
        self.states[final_state] += 1
        if latency is not None:
            self.latencies.append(latency)
        self.last_done = time.monotonic()
        if self.expect is not None and self.done >= self.expect:
            self.enough.set()

    @property
    def done(self) -> int:
        return sum(self.states.values())

    def as_dict(self, agents: list[DeviceAgent], elapsed: float, sessions: int) -> dict[str, Any]:
        """The figures; ``sessions``: the live MQTT sessions when the run ended (before the stop)."""
        totals: Counter[str] = Counter()
        for agent in agents:
            totals.update(vars(agent.counters))
            if agent.channel is not None:
                totals["notifies"] += agent.channel.notifies
        p50, p99 = percentile(self.latencies, 0.5), percentile(self.latencies, 0.99)
        return {
            "devices": len(agents),
            "elapsed_seconds": round(elapsed, 3),
            "commands_done": self.done,
            "states": dict(self.states),
            "latency_p50_seconds": None if p50 is None else round(p50, 4),
            "latency_p99_seconds": None if p99 is None else round(p99, 4),
            "mqtt_sessions_at_end": sessions,
            **dict(totals),
        }


@dataclass
class SimulateOptions:
    server: str
    devices: list[tuple[str, str]]
    mqtt: bool = True
    delay: tuple[float, float] = (0.0, 0.0)
    success_ratio: float = 1.0
    expect: int | None = None
    duration: float | None = None
    idle: float | None = None
    start_spread: float = 2.0
    connections: int = 100
    seed: int | None = None
    report_in_progress: bool = True


class Fleet:
    """The virtual devices of one run: :meth:`start` them, wait, :meth:`stop` them. The
    benchmark (``bench/mqtt_fleet.py``) drives one step by step; :func:`simulate` runs one."""

    def __init__(self, options: SimulateOptions, client: httpx.AsyncClient) -> None:
        self.options = options
        rng = random.Random(options.seed)
        self.summary = Summary(expect=options.expect)
        runner = SimulatedRunner(options.delay, options.success_ratio, rng)
        self.agents: list[DeviceAgent] = []
        gate = asyncio.Semaphore(options.connections)
        for device_id, token in options.devices:
            config = AgentConfig(
                server=options.server,
                device_id=device_id,
                token=token,
                mqtt=options.mqtt,
                start_jitter=options.start_spread,
                report_in_progress=options.report_in_progress,
            )
            api = DeviceApi(client, options.server, device_id, token, gate)
            agent = DeviceAgent(config, api, runner, Journal(None), self.summary, random.Random(rng.random()))
            self.agents.append(agent)
        self.tasks: list[asyncio.Task[None]] = []
        self.started = time.monotonic()

    def start(self) -> None:
        self.started = time.monotonic()
        self.tasks = [asyncio.create_task(agent.run()) for agent in self.agents]

    def mqtt_sessions(self) -> int:
        return sum(1 for a in self.agents if a.channel is not None and a.channel.connected.is_set())

    async def until_done(self) -> None:
        """Until ``expect`` commands ended, ``duration`` passed, or ``idle`` seconds passed
        with none ending (after one did)."""
        options, summary = self.options, self.summary
        while True:
            now = time.monotonic()
            if options.duration is not None and now - self.started >= options.duration:
                return
            if options.idle is not None and summary.done and now - summary.last_done >= options.idle:
                return
            try:
                await asyncio.wait_for(summary.enough.wait(), timeout=0.5)
                return
            except TimeoutError:
                continue

    async def stop(self) -> dict[str, Any]:
        """Stop every device (30 s for their last reports); the run's figures."""
        sessions = self.mqtt_sessions()
        for agent in self.agents:
            agent.stop()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=30)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        return self.summary.as_dict(self.agents, time.monotonic() - self.started, sessions)


async def simulate(options: SimulateOptions, client: httpx.AsyncClient) -> tuple[Summary, dict[str, Any]]:
    """Run a fleet until it is done (:meth:`Fleet.until_done`): its summary and figures."""
    fleet = Fleet(options, client)
    fleet.start()
    try:
        await fleet.until_done()
    finally:
        figures = await fleet.stop()
    return fleet.summary, figures


def format_summary(figures: dict[str, Any]) -> str:
    lines = [f"{key:>22}  {json.dumps(value)}" for key, value in figures.items()]
    return "\n".join(lines)

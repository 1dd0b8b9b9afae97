"""``dos-agent run`` (one device) and ``dos-agent simulate`` (many virtual ones)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

import httpx

from dos_agent.agent import DeviceAgent
from dos_agent.config import AgentConfig, ConfigError, HandlerSpec, from_mapping, parse_assignment, read_file
from dos_agent.handlers import Handlers
from dos_agent.http_api import DeviceApi
from dos_agent.journal import Journal
from dos_agent.mqtt_channel import cancel
from dos_agent.simulate import SimulateOptions, format_summary, make_devices, read_tokens, simulate

#: After SIGTERM, how long a running handler may take before the agent stops without it (its
#: journal then says "running", and the next start resumes it).
STOP_GRACE_SECONDS = 10.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dos-agent", description="The reference device agent.")
    parser.add_argument("--log-level", help="default: INFO for run, WARNING for simulate")
    commands = parser.add_subparsers(dest="action", required=True)

    run = commands.add_parser("run", help="run the agent of one device")
    run.add_argument("--server", help="the server's base URL, e.g. http://127.0.0.1:8000")
    run.add_argument("--device-id")
    run.add_argument("--token", help="the device token (default: $DOS_AGENT_TOKEN)")
    run.add_argument("--config", type=Path, help="a TOML or JSON file (agent/README.md)")
    run.add_argument("--state-dir", type=Path, help="where the journal lives")
    run.add_argument("--handler", action="append", default=[], metavar="TYPE=COMMAND")
    run.add_argument("--python-handler", action="append", default=[], metavar="TYPE=MODULE:FUNCTION")
    run.add_argument("--handler-timeout", type=float, help="seconds, for the flags' handlers")
    run.add_argument("--unhandled", choices=["fail", "succeed"], help="what a type with no handler gets")
    run.add_argument("--no-mqtt", action="store_true", help="poll only, even if the server offers MQTT")
    run.add_argument("--start-jitter", type=float, help="seconds; the first poll waits up to this")
    run.add_argument("--max-backoff", type=float, help="seconds; the longest wait after errors")

    sim = commands.add_parser("simulate", help="many virtual devices in one process")
    sim.add_argument("--server", required=True)
    sim.add_argument("--tokens-file", type=Path, help="lines 'device_id token'")
    sim.add_argument("--api-key", help="an admin/operator key: creates --devices devices")
    sim.add_argument("--devices", type=int, default=10)
    sim.add_argument("--prefix", default="sim-", help="ids of the devices --api-key creates")
    sim.add_argument("--write-tokens", type=Path, help="save the devices' tokens for --tokens-file")
    sim.add_argument("--success-ratio", type=float, default=1.0)
    sim.add_argument("--delay", type=float, default=0.0, help="seconds a simulated handler takes")
    sim.add_argument("--delay-max", type=float, help="a random delay between --delay and this")
    sim.add_argument("--expect", type=int, help="stop once this many commands ended")
    sim.add_argument("--duration", type=float, help="stop after this many seconds")
    sim.add_argument("--idle", type=float, help="stop this long after the last command ended")
    sim.add_argument("--start-spread", type=float, default=2.0, help="seconds over which devices start")
    sim.add_argument("--connections", type=int, default=100, help="HTTP connections shared by all")
    sim.add_argument("--no-mqtt", action="store_true")
    sim.add_argument("--no-in-progress", action="store_true", help="report Acknowledged and the outcome")
    sim.add_argument("--seed", type=int)
    sim.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    return parser


def run_config(args: argparse.Namespace) -> AgentConfig:
    """The file's settings with the flags over them."""
    config = from_mapping(read_file(args.config)) if args.config else AgentConfig()
    config.server = args.server or config.server
    config.device_id = args.device_id or config.device_id
    config.token = args.token or config.token or os.environ.get("DOS_AGENT_TOKEN", "")
    config.state_dir = args.state_dir or config.state_dir
    timeout = args.handler_timeout
    for text in args.handler:
        name, command = parse_assignment(text, "--handler")
        config.handlers[name] = HandlerSpec("shell", command, *(() if timeout is None else (timeout,)))
    for text in args.python_handler:
        name, target = parse_assignment(text, "--python-handler")
        config.handlers[name] = HandlerSpec("python", target, *(() if timeout is None else (timeout,)))
    if args.unhandled:
        config.unhandled = HandlerSpec(args.unhandled)
    if args.no_mqtt:
        config.mqtt = False
    if args.start_jitter is not None:
        config.start_jitter = args.start_jitter
    if args.max_backoff is not None:
        config.max_backoff = args.max_backoff
    config.check()
    return config


async def run_agent(config: AgentConfig) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        agent = DeviceAgent(
            config,
            DeviceApi(client, config.server, config.device_id, config.token),
            Handlers(config.handlers, config.unhandled),
            Journal(config.state_path()),
        )
        task = asyncio.create_task(agent.run())
        stopping = asyncio.Event()

        def stop() -> None:
            agent.stop()
            stopping.set()

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop)
        signalled = asyncio.create_task(stopping.wait())
        await asyncio.wait({task, signalled}, return_when=asyncio.FIRST_COMPLETED)
        signalled.cancel()
        if not task.done():  # a handler still running: give it a moment, then leave it to resume
            await asyncio.wait({task}, timeout=STOP_GRACE_SECONDS)
            await cancel(task)
        if not task.cancelled():
            task.result()  # an error of the agent's own: raise it


async def run_simulation(args: argparse.Namespace) -> int:
    limits = httpx.Limits(max_connections=args.connections, max_keepalive_connections=args.connections)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        if args.tokens_file:
            devices = read_tokens(args.tokens_file)
        elif args.api_key:
            devices = await make_devices(client, args.server, args.api_key, args.devices, args.prefix)
        else:
            raise ConfigError("simulate needs --tokens-file or --api-key")
        if args.write_tokens:
            args.write_tokens.write_text("".join(f"{d} {t}\n" for d, t in devices))
        options = SimulateOptions(
            server=args.server,
            devices=devices,
            mqtt=not args.no_mqtt,
            delay=(args.delay, args.delay if args.delay_max is None else args.delay_max),
            success_ratio=args.success_ratio,
            expect=args.expect,
            duration=args.duration,
            idle=args.idle,
            start_spread=args.start_spread,
            connections=args.connections,
            seed=args.seed,
            report_in_progress=not args.no_in_progress,
        )
        summary, figures = await simulate(options, client)
    print(json.dumps(figures) if args.json else format_summary(figures), flush=True)
    return 0 if args.expect is None or summary.done >= args.expect else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=(args.log_level or ("INFO" if args.action == "run" else "WARNING")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        if args.action == "run":
            asyncio.run(run_agent(run_config(args)))
            return 0
        return asyncio.run(run_simulation(args))
    except ConfigError as bad:
        print(f"dos-agent: {bad}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

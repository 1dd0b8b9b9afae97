"""A fleet on MQTT, end to end: N simulated devices (``dos-agent simulate``'s, in this process)
connected to a real Mosquitto, one operation on all of them, notified, handed out over
``inbox/get`` and reported to SUCCESS through the bridge.

    .venv/bin/python bench/mqtt_fleet.py [--devices 10000] [--bridges 1] [--web-workers 2]
        [--prelogin | --offline-logins] [--pgbench-seconds 10]
        [--database-url postgres://postgres@127.0.0.1:5432/bench_mqtt_fleet]
        [--redis-url redis://127.0.0.1:6379/8] [--keep]

It creates the database, migrates it, makes a tenant and an admin key, starts the project's
Mosquitto (``config/mosquitto.py``), gunicorn, a Celery worker and ``manage.py mqtt_bridge``,
all with ``MQTT_URL``; creates the devices through ``POST /v0/devices/bulk/`` and starts the
fleet (each device fetches its credentials, connects and subscribes). Then it measures:

- **connect**: from the fleet's start until every device has a live MQTT session (each
  device's first credentials request makes its broker login; ``--prelogin`` makes them all
  first, in one reconcile on the running broker, ``--offline-logins`` in one write of the
  plugin's file while the broker is stopped (``manage.py mqtt_sync_logins --offline``), and
  says how long that took);
- **memory per MQTT session**: the broker's resident memory, its own count of its heap
  (``$SYS/broker/heap/current``: the resident memory does not grow when the sessions fit in
  room left by reading the logins' file), and this process's (the N clients), after every
  session is up minus before, divided by N;
- **notify**: from the operation's POST to each device's notify (p50, p99, last);
- **done**: from the POST to each command's SUCCESS accepted (p50, p99) and to the last one;
- **CPUs used**: from the POST to the end, the CPU each part of the run kept busy (this
  process, the simulated fleet; the bridge; the broker; gunicorn; the worker; PostgreSQL's
  backends of the run's database), from ``/proc``: which part the run waited for;
- **pgbench**: ``pgbench -N`` tps on a scratch database of the same PostgreSQL, run once the
  operation is done, the fleet still connected (the figures above beside what the database
  does on this box at that moment).

Everything shares the machine's CPUs (the fleet itself is one Python process). The process
raises its open-files limit to hold the sessions (root may; the broker inherits it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from dos_agent.simulate import Fleet, SimulateOptions, make_devices

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import (
    ROOT,
    Database,
    free_port,
    machine,
    manage,
    percentile,
    pgbench_tps,
    project_env,
    start_gunicorn,
    start_worker,
    stop,
)
from config import mosquitto


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


#: Parts of the stack by what their command line holds (this process's descendants), for the CPU
#: each used during the operation: which one the run waited for.
PARTS = (("mqtt_bridge", "bridge"), ("mosquitto", "broker"), ("gunicorn", "web"), ("celery", "worker"))


def cpu_seconds(database_name: str) -> dict[str, float]:
    """CPU seconds (user and system) used so far by each part of the run: this process (the
    simulated fleet), its descendants by :data:`PARTS`, and PostgreSQL's backends of the run's
    database."""
    tick = os.sysconf("SC_CLK_TCK")
    rows: dict[int, tuple[int, str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        rows[int(entry.name)] = (int(fields[1]), command, (int(fields[11]) + int(fields[12])) / tick)
    mine = {os.getpid()}
    grew = True
    while grew:
        grew = False
        for pid, (parent, _command, _cpu) in rows.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                grew = True
    used: dict[str, float] = {"fleet (this process)": rows.get(os.getpid(), (0, "", 0.0))[2]}
    for pid, (_parent, command, cpu) in rows.items():
        part = None
        if command.startswith("postgres:") and f" {database_name} " in command:
            part = "postgresql"
        elif pid in mine and pid != os.getpid():
            part = next((name for needle, name in PARTS if needle in command), "other")
        if part:
            used[part] = used.get(part, 0.0) + cpu
    return used


def broker_heap(broker: mosquitto.Broker, timeout: float = 25.0) -> int | None:
    """The bytes Mosquitto has allocated (``$SYS/broker/heap/current``, its own count), as it
    publishes them next (every ``sys_interval``, 10 s; the retained value may be older). The
    resident memory cannot tell the sessions' memory apart: after reading a large
    dynamic-security file the broker's heap has room that the sessions then take without growing."""
    values: queue.Queue[int] = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(broker.admin_user, broker.admin_password)

    def on_message(_client: mqtt.Client, _data: object, message: mqtt.MQTTMessage) -> None:
        if not message.retain:
            values.put(int(message.payload))

    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.subscribe("$SYS/broker/heap/current")
    client.loop_start()
    try:
        return values.get(timeout=timeout)
    except queue.Empty:
        return None
    finally:
        client.disconnect()
        client.loop_stop()


def start_bridge(env: dict[str, str], log: Path, name: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        bridge = subprocess.Popen(
            [sys.executable, "manage.py", "mqtt_bridge", "--client-id", name],
            cwd=ROOT,
            env={**env, "LOG_LEVEL": "INFO"},  # it says when it is connected
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "connected to" in log.read_text(errors="replace"):
            return bridge
        if bridge.poll() is not None:
            raise SystemExit(f"the bridge exited; see {log}")
        time.sleep(0.1)
    stop(bridge)
    raise SystemExit(f"the bridge did not connect; see {log}")


def seconds(values: list[float]) -> str:
    if not values:
        return "none"
    return (
        f"p50 {percentile(values, 0.5):.2f} s, p99 {percentile(values, 0.99):.2f} s, "
        f"last {max(values):.2f} s (n={len(values)})"
    )


def offline_logins(env: dict[str, str], broker: mosquitto.Broker, process: subprocess.Popen[bytes]) -> float:
    """Stop the broker, write every device's login into its dynamic-security file in one go
    (``manage.py mqtt_sync_logins --offline``), start it again on the same port. The seconds the
    write took (the broker's stop and start not counted)."""
    mosquitto.stop(process)
    started = time.monotonic()
    manage(env, "mqtt_sync_logins", "--offline", str(broker.dynsec_file))
    return time.monotonic() - started


def raise_open_files(devices: int) -> int:
    """Room for ``devices`` sessions in this process and in the broker it starts (which
    inherits the limit): about two descriptors each, and some."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(soft, 2 * devices + 4096)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):  # not root: as far as the hard limit goes
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def prelogin(database: Database, env: dict[str, str]) -> float:
    """Make every device's broker login before the fleet starts, as ``manage.py
    mqtt_sync_logins`` does after a drift (one reconcile, its commands sent in chunks): marks
    every device as having asked (a ``BrokerLogin`` row), then reconciles. The seconds it took."""
    started = time.monotonic()
    with database.connect() as conn:
        conn.execute(
            "INSERT INTO inventory_brokerlogin (device_id, created_at) "
            "SELECT id, now() FROM inventory_device ON CONFLICT DO NOTHING"
        )
    manage(env, "mqtt_sync_logins")
    return time.monotonic() - started


@dataclass
class Ready:
    """What the fleet starts on: the broker's pid (for its memory) and how long making the
    logins first took (None when each device makes its own on its first request)."""

    broker_pid: int
    logins_seconds: float | None
    broker: mosquitto.Broker


async def measure(
    url: str,
    key: str,
    devices: int,
    ready: Callable[[], Ready],
    pgbench: Callable[[], float],
    done_timeout: float,
    connect_timeout: float,
    database_name: str,
) -> dict[str, object]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        made = time.monotonic()
        fleet_devices = await make_devices(client, url, key, devices, "fleet-")
        created = time.monotonic() - made
        stack = ready()
        options = SimulateOptions(
            server=url,
            devices=fleet_devices,
            expect=devices,
            start_spread=min(30.0, devices / 500),
            connections=64,
        )
        fleet = Fleet(options, client)
        broker_before, own_before = rss_kib(stack.broker_pid), rss_kib(os.getpid())
        heap_before = await asyncio.to_thread(broker_heap, stack.broker)
        fleet.start()
        last_report = 0.0
        while (sessions := fleet.mqtt_sessions()) < devices:
            waited = time.monotonic() - fleet.started
            if waited > connect_timeout:  # go on with those connected, and say so
                print(f"only {sessions} of {devices} sessions after {connect_timeout:.0f} s", flush=True)
                break
            if waited - last_report >= 30:
                last_report = waited
                print(f"{waited:.0f} s: {sessions} sessions", flush=True)
            await asyncio.sleep(0.5)
        connected = time.monotonic() - fleet.started
        await asyncio.sleep(2)  # the first inbox/get of each new session settles
        broker_after, own_after = rss_kib(stack.broker_pid), rss_kib(os.getpid())
        heap_after = await asyncio.to_thread(broker_heap, stack.broker)

        cpu_before = cpu_seconds(database_name)
        posted = time.monotonic()
        answer = await client.post(
            f"{url}/v0/operations/",
            json={"operation_type": "BEEP_DEVICE", "operation_device_query": {"all": True}},
            headers={"Authorization": f"Bearer {key}"},
        )
        answer.raise_for_status()
        answered = time.monotonic()
        print(
            f"all connected in {connected:.1f} s; broker RSS {broker_after} KiB (before {broker_before}); "
            "operation posted",
            flush=True,
        )
        try:
            await asyncio.wait_for(fleet.until_done(), timeout=done_timeout)
        except TimeoutError:  # some never ended: say how many did, not wait forever
            print(f"only {fleet.summary.done} of {devices} commands ended {done_timeout} s after the POST")
        notifies = [
            min(t for t in agent.channel.notify_times if t >= posted) - posted
            for agent in fleet.agents
            if agent.channel is not None and any(t >= posted for t in agent.channel.notify_times)
        ]
        last_done = fleet.summary.last_done
        cpu_after, wall = cpu_seconds(database_name), time.monotonic() - posted
        tps = await asyncio.to_thread(pgbench)
        figures = await fleet.stop()
    return {
        "devices": devices,
        "devices_created_seconds": round(created, 2),
        "logins_first_seconds": None if stack.logins_seconds is None else round(stack.logins_seconds, 2),
        "connect_all_seconds": round(connected, 2),
        "broker_kib_per_session": round((broker_after - broker_before) / devices, 2),
        "broker_heap_kib_per_session": (
            round((heap_after - heap_before) / 1024 / devices, 2) if heap_after and heap_before else None
        ),
        "broker_rss_mib": round(broker_after / 1024, 1),
        "clients_kib_per_session": round((own_after - own_before) / devices, 2),
        "post_answer_seconds": round(answered - posted, 2),
        "notify": seconds(notifies),
        "commands_ended": fleet.summary.done,
        "creation_to_last_success_seconds": round(last_done - posted, 2),
        "answer_to_last_success_seconds": round(last_done - answered, 2),
        "pgbench_n_tps": round(tps),
        # CPUs each part kept busy from the POST to the end (2.0 = two whole CPUs)
        "cpus_used_post_to_end": {
            part: round((cpu_after.get(part, 0.0) - cpu_before.get(part, 0.0)) / wall, 2)
            for part in sorted(cpu_after)
        },
        "post_to_end_seconds": round(wall, 1),
        "load_average": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "fleet": figures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--bridges", type=int, default=1)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_mqtt_fleet"),
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    logins = parser.add_mutually_exclusive_group()
    logins.add_argument(
        "--prelogin",
        action="store_true",
        help="make the broker logins in one reconcile before the fleet starts (not one per device's "
        "first credentials request, which is the slow part of connecting a large fleet)",
    )
    logins.add_argument(
        "--offline-logins",
        action="store_true",
        help="make the broker logins before the fleet starts by writing the plugin's file while the "
        "broker is stopped (manage.py mqtt_sync_logins --offline): one write for all of them",
    )
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=1800,
        help="seconds to wait for every session before going on",
    )
    parser.add_argument(
        "--done-timeout",
        type=float,
        default=300,
        help="seconds after the POST to stop waiting for the commands",
    )
    args = parser.parse_args()

    open_files = raise_open_files(args.devices)
    database = Database(args.database_url)
    database.recreate()
    work = Path(tempfile.mkdtemp(prefix="bench-mqtt-fleet-"))
    broker = mosquitto.prepare(work / "mosquitto", mosquitto.free_port())
    brokers = [mosquitto.start(broker)]
    env = project_env(args.database_url, args.redis_url, MQTT_URL=broker.url)
    processes: list[subprocess.Popen[bytes]] = []

    def ready() -> Ready:
        """The logins first if asked, then the bridges (after any restart of the broker)."""
        logins_seconds = None
        if args.prelogin:
            logins_seconds = prelogin(database, env)
        elif args.offline_logins:
            logins_seconds = offline_logins(env, broker, brokers[-1])
            brokers.append(mosquitto.start(broker, timeout=120))  # it reads every login first
        for number in range(args.bridges):
            processes.append(start_bridge(env, work / f"bridge-{number}.log", f"bench-bridge-{number}"))
        return Ready(brokers[-1].pid, logins_seconds, broker)

    try:
        manage(env, "migrate", "--noinput", "-v0")
        manage(env, "create_tenant", "bench")
        key = manage(env, "create_api_key", "--tenant", "bench", "--role", "admin").strip().splitlines()[-1]
        port = free_port()
        processes.append(
            start_gunicorn(
                env, port, ["-w", str(args.web_workers), "-k", "gthread", "--threads", "8"], work / "web.log"
            )
        )
        processes.append(start_worker(env, work / "worker.log", concurrency=2))
        print(machine(database.admin_url), f"open files {open_files}", flush=True)
        figures = asyncio.run(
            measure(
                f"http://127.0.0.1:{port}",
                key,
                args.devices,
                ready,
                lambda: pgbench_tps(database, args.pgbench_seconds, clients=8, threads=2),
                args.done_timeout,
                args.connect_timeout,
                database.name,
            )
        )
        print(json.dumps(figures, indent=2), flush=True)
    finally:
        for process in reversed(processes):
            stop(process)
        mosquitto.stop(brokers[-1])
        if not args.keep:
            database.drop()
        print(f"logs in {work}", flush=True)


if __name__ == "__main__":
    main()

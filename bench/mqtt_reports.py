"""Device reports settled through MQTT per second: the bridge (``manage.py mqtt_bridge``) in
batches, with the operations' counters checked exact at the end.

    flock /tmp/bench.lock .venv/bin/python bench/mqtt_reports.py [--devices 10000]
        [--operations 2] [--bridges 1] [--batch-size 1000] [--batch-ms 20]
        [--database-url postgres://postgres@127.0.0.1:5432/bench_mqtt] [--redis-url redis://127.0.0.1:6379/9]

It creates the database, migrates it, imports the devices and fans out the operations in
process (MQTT off there: no notify is written), starts a Mosquitto 2 of its own
(``config.mosquitto``) and the bridge(s) as an operator would, then publishes one update per
command at QoS 1 as fast as the broker takes them (``Command Acknowledged`` for every command,
then, once all are settled, ``Command Success``), and times from the first publish to the last
report committed (read from the database every 20 ms). Beside each figure, in the same run:

- the broker's ceiling: the same messages published and acknowledged by Mosquitto with
  nobody settling them (the publisher and the broker alone);
- the database's ceiling: ``pgbench -N -c<bridges> -j<bridges>`` on a scratch database of the
  same server for the same time (single-row write transactions on one connection per bridge, as
  each bridge writes on one).

At the end every operation's counters are compared with ``commands.counting.recount``; a
difference fails the run. Run it under ``flock /tmp/bench.lock`` as above, so that benches never
overlap (the script takes no lock itself: one taken inside would wait forever for that flock).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import ROOT, Database, machine, manage, pgbench_tps, project_env, stop

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/bench_mqtt"
DEFAULT_REDIS = "redis://127.0.0.1:6379/9"


def publisher(broker: Any) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(broker.admin_user, broker.admin_password)
    client.max_inflight_messages_set(1000)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def publish_all(client: mqtt.Client, messages: list[tuple[str, bytes]]) -> float:
    """Publish at QoS 1; the seconds until the broker acknowledged the last one."""
    start = time.perf_counter()
    sent = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in sent:
        info.wait_for_publish(120)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--operations", type=int, default=2)
    parser.add_argument("--bridges", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batch-ms", type=int, default=20)
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--profile", help="write the first bridge's cProfile statistics to this file")
    options = parser.parse_args()

    from config import mosquitto

    db = Database(options.database_url)
    env = project_env(db.url, options.redis_url)
    print(f"machine: {machine(db.admin_url)}")
    db.recreate()
    redis.Redis.from_url(options.redis_url).flushdb()
    folder = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
    broker = mosquitto.prepare(folder / "broker", mosquitto.free_port())
    broker_process = mosquitto.start(broker)
    bridges: list[subprocess.Popen[bytes]] = []
    try:
        manage(env, "migrate", "--noinput", "-v0")
        os.environ.update(env)
        import django

        django.setup()
        from commands import counting
        from commands.choices import CommandState
        from commands.models import CommandStatus
        from inventory import device_topics
        from inventory.services import bulk_import_devices, get_or_create_tenant
        from operations import fanout
        from operations import services as operations
        from operations.models import Operation

        tenant, _ = get_or_create_tenant("bench")
        bulk_import_devices(tenant.pk, [{"device_id": f"dev_{i:05d}"} for i in range(options.devices)])
        made = []
        for _ in range(options.operations):
            operation = operations.create_operation(
                tenant.pk, {"operation_type": "REBOOT", "operation_device_query": {"all": True}}, "bench"
            )
            fanout.fan_out(operation.pk)
            made.append(operation.pk)
        commands = list(
            CommandStatus.objects.filter(operation_id__in=made).values_list("device__device_id", "pk")
        )
        print(f"{len(commands):,} commands of {options.operations} operations on {options.devices:,} devices")

        def messages(state: str) -> list[tuple[str, bytes]]:
            return [
                (
                    device_topics.update("bench", device, pk),
                    json.dumps({"state": state, "client_token": str(pk)}).encode(),
                )
                for device, pk in commands
            ]

        def settled(state: CommandState) -> int:
            return CommandStatus.objects.filter(operation_id__in=made, state=state).count()

        results: list[tuple[str, float, str]] = []
        # The broker's ceiling: the same number of messages on a topic nobody settles.
        client = publisher(broker)
        dummy = [
            (f"dos/v1/bench/nobody{i % 100}/x", b'{"state":"Command Acknowledged"}')
            for i in range(len(commands))
        ]
        broker_seconds = publish_all(client, dummy)
        results.append(
            (
                "ceiling: Mosquitto takes QoS-1 updates (PUBACK), nobody settling",
                len(commands) / broker_seconds,
                "",
            )
        )

        bridge_env = {**env, "MQTT_URL": broker.url, "LOG_LEVEL": "INFO"}
        for number in range(options.bridges):
            log = (folder / f"bridge-{number}.log").open("ab")
            bridges.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        *(
                            ["-m", "cProfile", "-o", options.profile]
                            if options.profile and not number
                            else []
                        ),
                        "manage.py",
                        "mqtt_bridge",
                        "--client-id",
                        f"bench-bridge-{number}",
                        "--batch-size",
                        str(options.batch_size),
                        "--batch-ms",
                        str(options.batch_ms),
                    ],
                    cwd=ROOT,
                    env=bridge_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + 30
        while (
            sum(
                (folder / f"bridge-{n}.log").read_text().count("connected to") for n in range(options.bridges)
            )
            < options.bridges
        ):
            if time.monotonic() > deadline:
                raise SystemExit(f"the bridges did not connect; see {folder}")
            time.sleep(0.05)

        for state in (CommandState.ACKNOWLEDGED, CommandState.SUCCESS):
            batch = messages(str(state.label))
            start = time.perf_counter()
            publish_all(client, batch)
            while settled(state) < len(commands):
                if time.perf_counter() - start > 600:
                    raise SystemExit(f"not settled after 600 s; see {folder}")
                time.sleep(0.02)
            seconds = time.perf_counter() - start
            results.append(
                (
                    f"reports settled through MQTT: {state.label}",
                    len(commands) / seconds,
                    f"{seconds:.1f} s",
                )
            )
        client.disconnect()
        client.loop_stop()
        # One connection per bridge: each bridge writes on one.
        clients = options.bridges
        tps = pgbench_tps(db, len(commands) / results[-1][1], clients, clients)
        results.append(
            (f"ceiling: pgbench -N -c{clients} -j{clients} (single-row write transactions)", tps, "")
        )

        for operation_id in made:
            operation = Operation.objects.get(pk=operation_id)
            shown = {name: getattr(operation, name) for name in counting.COUNTERS}
            if shown != counting.recount(operation_id):
                raise SystemExit(
                    f"counters of {operation_id} are not exact: {shown} != {counting.recount(operation_id)}"
                )
            assert shown["success_count"] == options.devices
        print(f"counters exact: {options.operations} operations, success_count {options.devices:,} each\n")
        print(f"bridges {options.bridges}, batches of up to {options.batch_size} or {options.batch_ms} ms\n")
        print("| measured | per second | time |\n|---|---:|---:|")
        for name, rate, took in results:
            print(f"| {name} | {rate:,.0f} | {took} |")
    finally:
        for bridge in bridges:
            stop(bridge)
        mosquitto.stop(broker_process)
        db.drop()
        redis.Redis.from_url(options.redis_url).flushdb()


if __name__ == "__main__":
    main()

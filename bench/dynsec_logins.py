"""What a device login costs Mosquitto's dynamic-security plugin as the logins it holds grow
(docs/mqtt.md, "What dynamic security costs"): logins made 100 at a time, as
``inventory.broker_logins`` makes them (a role of the device's ACLs and a client), on a broker of
the benchmark's own; after each step, the time of the last 100 and the size of the plugin's file.

    SECRET_KEY=x .venv/bin/python bench/dynsec_logins.py --logins 1000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

STEP = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=1000)
    parser.add_argument("--report-every", type=int, default=500)
    args = parser.parse_args()

    import django

    django.setup()
    from config import mosquitto
    from inventory import broker_logins, dynsec

    with tempfile.TemporaryDirectory() as folder:
        broker = mosquitto.prepare(Path(folder), mosquitto.free_port())
        process = mosquitto.start(broker)
        try:
            with dynsec.connect(broker.url) as control:
                for made in range(0, args.logins, STEP):
                    commands = []
                    for i in range(made, made + STEP):
                        login = broker_logins.Wanted(f"bench/d{i}", "bench", f"d{i}", "p" * 43, True)
                        commands += broker_logins._create(login)
                    started = time.monotonic()
                    control.run(commands)
                    took = time.monotonic() - started
                    if (made + STEP) % args.report_every == 0:
                        size = broker.dynsec_file.stat().st_size / 1e6
                        each = took / len(commands) * 1000
                        print(
                            f"{made + STEP:>6} logins: the last {STEP} ({len(commands)} commands) took "
                            f"{took:.2f} s, {each:.1f} ms a command; file {size:.1f} MB",
                            flush=True,
                        )
        finally:
            mosquitto.stop(process)


if __name__ == "__main__":
    main()

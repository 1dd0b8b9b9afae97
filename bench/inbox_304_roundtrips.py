"""The inbox's 304 answer with the rate-limit counter on and off: Redis round trips, time per poll.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_rl REDIS_URL=redis://127.0.0.1:6379/12 \\
        SECRET_KEY=x .venv/bin/python bench/inbox_304_roundtrips.py
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

POLLS = 3000


def main() -> None:
    import django

    django.setup()
    import redis.connection
    from django.conf import settings
    from django.test import Client
    from django.test.utils import setup_databases, setup_test_environment, teardown_databases

    from inventory.services import create_device, get_or_create_tenant

    setup_test_environment()
    old = setup_databases(verbosity=0, interactive=False)
    try:
        tenant, _ = get_or_create_tenant("bench")
        _, token = create_device(tenant.pk, {"device_id": "bench-1"})
        client = Client()
        headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
        params = {"device_id": "bench-1"}
        etag = client.get("/v2/command-inbox/", params, **headers)["ETag"]

        sends = {"n": 0}
        original = redis.connection.AbstractConnection.send_packed_command

        def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
            sends["n"] += 1
            return original(self, *args, **kwargs)

        redis.connection.AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
        for limit in (0, 10**9, 0, 10**9, 0, 10**9):
            settings.RATE_LIMIT_DEVICE_PER_MINUTE = limit
            sends["n"] = 0
            started = time.perf_counter()
            not_modified = 0
            for _ in range(POLLS):
                response = client.get("/v2/command-inbox/", params, HTTP_IF_NONE_MATCH=etag, **headers)
                if response.status_code == 304:
                    not_modified += 1
                else:  # another process bumped the generation: take the new ETag
                    etag = response["ETag"]
            elapsed = time.perf_counter() - started
            print(
                f"limit {'off' if not limit else 'on '}: {elapsed / POLLS * 1e6:6.0f} us per poll, "
                f"{sends['n'] / POLLS:.2f} Redis round trips per poll ({not_modified} of {POLLS} were 304)"
            )
    finally:
        teardown_databases(old, verbosity=0)


if __name__ == "__main__":
    main()

"""Both cache backends answer ``read_and_count`` alike, so nothing above branches on which one
is configured: Redis (production, one round trip: a Lua script) and files (the zero-config run)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from config.cache import CountingFileBasedCache, ReusingRedisCache
from config.errors import CacheUnavailable
from tests.conftest import wait_until
from tests.faults import RedisServer, free_port


@pytest.fixture(params=["files", "redis"])
def backend(request: Any, tmp_path: Path) -> Any:
    if request.param == "files":
        return CountingFileBasedCache(str(tmp_path / "cache"), {})
    assert settings.REDIS_URL, "the tests run against a real Redis (REDIS_URL)"
    return ReusingRedisCache(settings.REDIS_URL, {"KEY_PREFIX": f"test-{uuid.uuid4().hex}"})


def test_reads_the_keys_and_counts_each_request(backend: Any) -> None:
    backend.set("token", {"tenant": 1})
    backend.set("generation", 7)

    values, count = backend.read_and_count(["token", "missing", "generation"], "hits", 60)
    assert values == [{"tenant": 1}, None, 7]
    assert count == 1

    _, count = backend.read_and_count(["token"], "hits", 60)
    assert count == 2


def test_no_counter_reads_only(backend: Any) -> None:
    values, count = backend.read_and_count(["nothing"], None, 60)
    assert values == [None] and count is None
    _, count = backend.read_and_count(["nothing"], "hits", 60)
    assert count == 1  # the read alone counted nothing


def test_keys_named_after_other_keys_values_are_read_with_them(backend: Any) -> None:
    backend.set_many({"tenant-of:t1": 4, "device-of:t1": 9, "gen:4": 11, "devgen:9": 2})

    values, count, derived = backend.read_count_and_derive(
        ["token"], "hits", 60, ["tenant-of:t1", "device-of:t1"], ["gen:{0}", "devgen:{1}", "other:{1}"]
    )

    assert (values, count, derived) == ([None], 1, ([4, 9], [11, 2, None]))


def test_derived_keys_are_not_read_while_a_key_they_are_named_after_is_missing(backend: Any) -> None:
    backend.set("tenant-of:t2", 4)

    _, _, derived = backend.read_count_and_derive(
        ["token"], None, 60, ["tenant-of:t2", "device-of:t2"], ["gen:{0}", "devgen:{1}"]
    )

    assert derived is None


def test_a_counter_expires_with_its_window(backend: Any) -> None:
    _, count = backend.read_and_count(["x"], "window", 1)
    assert count == 1 and backend.get("window") == 1

    wait_until(lambda: backend.get("window") is None, timeout=10, what="the counter to expire")


def test_a_hash_collects_adds_and_is_taken_whole(backend: Any) -> None:
    backend.hash_add("seen", {"1": 10.0, "2": 20.0})
    backend.hash_add("seen", {"2": 25.0, "3": 30.0})

    assert backend.hash_take("seen") == {"1": 10.0, "2": 25.0, "3": 30.0}
    assert backend.hash_take("seen") == {}  # taken whole: a second taker gets nothing


def test_count_adds_one_and_expires_with_its_window(backend: Any) -> None:
    """The counter alone (failed token checks per address, ``inventory.ratelimit``)."""
    assert [backend.count("failures", 1) for _ in range(3)] == [1, 2, 3]

    wait_until(lambda: backend.get("failures") is None, timeout=10, what="the counter to expire")
    assert backend.count("failures", 60) == 1


def test_admit_keeps_at_most_the_limit_in_any_window(backend: Any) -> None:
    """A rollout's max_per_minute: admissions in a sliding window, shared by every process."""
    admitted, full_until = backend.admit("rate", ["a", "b"], 3, 60)
    assert (admitted, full_until) == (2, 0.0)
    assert backend.admitted("rate", 60) == 2

    admitted, full_until = backend.admit("rate", ["c", "d", "e"], 3, 60)

    assert admitted == 1
    assert full_until > time.time() + 55  # the first admission leaves the window in a minute
    assert backend.admit("rate", ["f"], 3, 60)[0] == 0
    assert backend.admitted("rate", 60) == 3


def test_admissions_leave_the_window_as_it_slides(backend: Any) -> None:
    assert backend.admit("short", ["a", "b"], 2, 0.5)[0] == 2
    assert backend.admit("short", ["c"], 2, 0.5)[0] == 0
    wait_until(lambda: backend.admit("short", ["c"], 2, 0.5)[0] == 1, timeout=5, what="a place to free")


# --- a Redis that cannot be reached (issue 23) ---------------------------------------------------

#: Every operation of the Redis backend, each with arguments it accepts.
OPERATIONS: dict[str, tuple[Any, ...]] = {
    "get": ("k",),
    "set": ("k", 1),
    "add": ("k", 1),
    "get_many": (["k", "l"],),
    "set_many": ({"k": 1},),
    "delete": ("k",),
    "delete_many": (["k"],),
    "incr": ("k",),
    "has_key": ("k",),
    "touch": ("k",),
    "read_count_and_derive": (["k"], "hits", 60, ["t"], ["gen:{0}"]),
    "count": ("hits", 60),
    "hash_add": ("seen", {"1": 1.0}),
    "hash_take": ("seen",),
    "admit": ("rate", ["a"], 3, 60.0),
    "admitted": ("rate", 60.0),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_every_operation_on_a_redis_nobody_listens_on_raises_cache_unavailable(operation: str) -> None:
    """Never redis-py's errors: callers catch one class of the project's (config.errors)."""
    unreachable = ReusingRedisCache(f"redis://127.0.0.1:{free_port()}/0", {})

    with pytest.raises(CacheUnavailable):
        getattr(unreachable, operation)(*OPERATIONS[operation])
    with pytest.raises(CacheUnavailable):  # again: now from the fresh failure, without a try
        getattr(unreachable, operation)(*OPERATIONS[operation])


def test_a_redis_that_comes_back_answers_again_and_the_deferred_writes_are_done(tmp_path: Path) -> None:
    """Stopped and started again (on the same port, empty): the same cache object answers once
    its fresh failure is a second old, and does the writes deferred meanwhile, once each."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        own = ReusingRedisCache(server.url(0), {"OPTIONS": {"socket_timeout": 2.0}})
        own.set("before", 1)
        server.stop()
        with pytest.raises(CacheUnavailable):
            own.get("before")
        own.defer("bump", lambda: own.incr("generation"))
        own.defer("bump", lambda: own.add("generation", 7))  # the latest write per key wins
        own.defer("forget", lambda: own.set("forgotten", True))

        server.start()
        wait_until(lambda: _answers(own), timeout=10, interval=0.1, what="the cache to answer again")

        assert own.get("generation") == 7 and own.get("forgotten") is True
        assert own.get("before") is None  # a Redis that keeps nothing on disk lost it
        own.set("generation", 1)
        own.get("anything")  # nothing deferred is done twice
        assert own.get("generation") == 1
    finally:
        server.stop()


def _answers(cache: ReusingRedisCache) -> bool:
    try:
        cache.get("probe")
    except CacheUnavailable:
        return False
    return True

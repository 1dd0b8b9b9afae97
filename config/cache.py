"""The cache backends: Redis in production, files for the zero-config run; one interface.

Both offer :meth:`read_count_and_derive`, the token lookup's "read these keys, count this
request, and read the keys named after the caller", and :meth:`count`, a counter alone (failed
token checks per address), both for ``inventory.ratelimit``; a hash that many processes add
to and one takes whole (``hash_add``/``hash_take``: the devices' sightings,
``inventory.presence``); and a sliding window of admissions shared by every process and
machine (``admit``/``admitted``: a rollout's ``max_per_minute``, ``operations.rates``), so no
code above branches on which cache is configured.

On Redis the token lookup is one Lua script (MGET + INCR): on the inbox's 304 path each round
trip costs about as much as the work. Django's ``RedisCacheClient.get_client`` also builds a new
``redis.Redis`` object on every cache operation (~0.1-0.2 ms with redis-py 8, more than
the round trip itself; bench/inbox_load.py); a client is thread-safe and only wraps the
shared pool, so here there is one per pool.

When Redis cannot be reached, every operation of the Redis backend raises
:class:`config.errors.CacheUnavailable` (never redis-py's errors), and for
:data:`RETRY_SECONDS` after a failure the next ones raise it at once without trying: a Redis
whose host is gone (no refusal, only silence) would otherwise hold every request for the
socket timeout. Callers decide what goes on without the cache (docs/reliability.md, "Issue 23");
writes that must not fail a request whose work has committed (a generation bump, dropping a
revoked token's cached lookup) go through :func:`best_effort`, which redoes them once Redis
answers again. The file backend never raises it.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import redis
from django.core.cache import cache as default_cache
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.redis import RedisCache, RedisCacheClient

from config.errors import CacheUnavailable
from config.metrics import CACHE_UNAVAILABLE

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

#: redis-py's errors that say Redis cannot be reached now (refused, reset, timed out, still
#: loading its data), as opposed to a command it refused (``ResponseError``: a defect).
_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)
#: After a failure, operations fail at once for this long before one tries Redis again.
RETRY_SECONDS = 1.0
#: Deferred writes kept per process while Redis is down (:func:`best_effort`); past it the
#: newest are dropped, with a log line (each is bounded anyway: see its caller).
MAX_DEFERRED = 10_000


class _Outage:
    """What one process knows of one Redis being down, shared by its threads (Django makes a
    cache object per thread): since when, when to try it again, and the writes to redo once
    it answers. One log line when it goes down and one when it is back, not one per request."""

    def __init__(self) -> None:
        self.since = 0.0  # time.monotonic() of the first failure; 0.0 while Redis answers
        self.retry_at = 0.0
        self.deferred: dict[str, Callable[[], object]] = {}
        self.lock = threading.Lock()

    def check(self) -> None:
        """Raise :class:`CacheUnavailable` at once while a failure is fresh."""
        if time.monotonic() < self.retry_at:
            raise CacheUnavailable("the cache is unavailable (it failed less than a second ago)")

    def failed(self, error: Exception) -> CacheUnavailable:
        now = time.monotonic()
        with self.lock:
            first, self.retry_at = not self.since, now + RETRY_SECONDS
            if first:
                self.since = now
        if first:
            # The error's class and text only: the location may carry a password.
            logger.warning("cache unavailable: %s: %s", type(error).__name__, error)
        return CacheUnavailable(f"the cache is unavailable: {type(error).__name__}")

    def answered(self) -> None:
        """An operation went through after a failure: Redis is back. Redo the deferred writes."""
        with self.lock:
            if not self.since:
                return
            down_for = time.monotonic() - self.since
            self.since = self.retry_at = 0.0
            deferred, self.deferred = self.deferred, {}
        _noted.clear()
        logger.warning("cache back after %.1f s; redoing %d deferred writes", down_for, len(deferred))
        for key, write in deferred.items():
            try:
                write()
            except CacheUnavailable:  # down again: once more when it is back
                self.defer(key, write)

    def defer(self, key: str, write: Callable[[], object]) -> None:
        with self.lock:
            if key in self.deferred or len(self.deferred) < MAX_DEFERRED:
                self.deferred[key] = write
                return
        logger.warning("cache unavailable: %d writes deferred already; %s dropped", MAX_DEFERRED, key)


#: One :class:`_Outage` per Redis location in this process.
_outages: dict[str, _Outage] = {}
_outages_lock = threading.Lock()
#: The uses of :func:`degraded` already logged in this outage (cleared when Redis is back).
_noted: set[str] = set()


def _outage_of(servers: Sequence[str]) -> _Outage:
    location = ",".join(servers)
    with _outages_lock:
        return _outages.setdefault(location, _Outage())


def _guarded(method: Callable[Concatenate[Any, P], R]) -> Callable[Concatenate[Any, P], R]:
    """``method`` of a Redis cache or client (which holds ``_outage``): redis-py's connection
    errors become :class:`CacheUnavailable`, and fail at once while a failure is fresh. On
    the normal path: two attribute reads and a ``try``, no round trip."""

    @functools.wraps(method)
    def guarded(self: Any, *args: P.args, **kwargs: P.kwargs) -> R:
        outage: _Outage = self._outage
        if outage.since:
            outage.check()
        try:
            result = method(self, *args, **kwargs)
        except _UNREACHABLE as error:
            raise outage.failed(error) from error
        if outage.since:
            outage.answered()
        return result

    return guarded


def degraded(use: str, what: str) -> None:
    """Note that ``use`` went on without the cache (``what`` says how): counted in
    ``dos_cache_unavailable_total{use}``, and logged once per process and outage."""
    CACHE_UNAVAILABLE.labels(use).inc()
    if use not in _noted:
        _noted.add(use)
        logger.warning("cache unavailable: %s", what)


def best_effort(use: str, key: str, write: Callable[[], object]) -> bool:
    """Do ``write`` (a cache write that a request's committed work asks for, and that may be
    done twice) now, or, with the cache down, once it answers again in this process (the
    latest ``write`` per ``key``); whether it was done now. A process that exits before Redis
    is back loses its deferred writes: each caller says what that costs."""
    try:
        write()
    except CacheUnavailable:
        degraded(use, f"{use}: deferred until the cache is back")
        defer = getattr(default_cache, "defer", None)
        if defer is not None:
            defer(key, write)
        return False
    return True


class _Counting:
    """What both backends build on their own ``read_count_and_derive``."""

    def read_count_and_derive(
        self,
        keys: Sequence[str],
        counter: str | None,
        timeout: int,
        by: Sequence[str] = (),
        derived: Sequence[str] = (),
    ) -> tuple[list[Any], int | None, tuple[list[Any], list[Any]] | None]:
        raise NotImplementedError

    def read_and_count(
        self, keys: Sequence[str], counter: str | None, timeout: int
    ) -> tuple[list[Any], int | None]:
        """The values of ``keys`` (None if absent) and, if ``counter`` is given, that counter
        after adding one (living ``timeout`` seconds after its last change)."""
        values, count, _ = self.read_count_and_derive(keys, counter, timeout)
        return values, count

    def count(self, counter: str, timeout: int) -> int:
        """Add one to ``counter`` and return it (as in :meth:`read_and_count`; on Redis one
        round trip, the script setting the expiry of the counter it makes)."""
        return self.read_count_and_derive([], counter, timeout)[1] or 0


class CountingFileBasedCache(_Counting, FileBasedCache):
    """Django's file cache (shared by the processes of one machine) with :meth:`read_and_count`."""

    def read_count_and_derive(
        self,
        keys: Sequence[str],
        counter: str | None,
        timeout: int,
        by: Sequence[str] = (),
        derived: Sequence[str] = (),
    ) -> tuple[list[Any], int | None, tuple[list[Any], list[Any]] | None]:
        """:meth:`read_and_count`, and the values of the keys named by the templates ``derived``
        once their ``{0}``, ``{1}``, ... are replaced by the values of the keys ``by``: those
        values and the derived keys' (None when one of ``by`` is absent), so that the caller can
        check what they were named after. A read and a write, not atomic: concurrent requests
        of one token may count once between them, which is close enough for the one
        development machine this cache serves."""
        found = self.get_many([*keys, *by, *([counter] if counter else [])])
        values = [found.get(key) for key in keys]
        derived_values = None
        if derived and by and all(found.get(key) is not None for key in by):
            named_after = [found[key] for key in by]
            names = [template.format(*named_after) for template in derived]
            more = self.get_many(names)
            derived_values = (named_after, [more.get(name) for name in names])
        if counter is None:
            return values, None, derived_values
        count = int(found.get(counter) or 0) + 1
        self.set(counter, count, timeout)
        return values, count, derived_values

    def hash_add(self, name: str, mapping: dict[str, float]) -> None:
        """Merge ``mapping`` into the hash ``name``, the greater value winning. A read and a
        write: a concurrent add may be lost, which for sightings only delays a ``last_seen``."""
        current = self.get(name) or {}
        for key, value in mapping.items():
            current[key] = max(value, current.get(key, value))
        self.set(name, current, None)

    def hash_take(self, name: str) -> dict[str, float]:
        """The whole hash ``name``, removed."""
        taken = self.get(name) or {}
        self.delete(name)
        return {key: float(value) for key, value in taken.items()}

    def _window_path(self, name: str) -> Path:
        return Path(self._dir) / f"window-{self.make_and_validate_key(name).replace(':', '_')}.json"  # type: ignore[attr-defined]

    def admit(self, name: str, members: Sequence[str], limit: int, window: float) -> tuple[int, float]:
        """As :meth:`ReusingRedisCache.admit`, atomic across the machine's processes by a file
        lock (this cache serves one machine)."""
        path = self._window_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            text = handle.read()
            now = time.time()
            stamps = [t for t in (json.loads(text) if text else []) if t > now - window]
            admitted = max(0, min(len(members), limit - len(stamps)))
            stamps += [now] * admitted
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(stamps))
            full_until = min(stamps) + window if len(stamps) >= limit else 0.0
            return admitted, full_until

    def admitted(self, name: str, window: float) -> int:
        """How many admissions ``name`` counted in the last ``window`` seconds."""
        path = self._window_path(name)
        try:
            stamps = json.loads(path.read_text() or "[]")
        except FileNotFoundError:
            return 0
        now = time.time()
        return sum(1 for t in stamps if t > now - window)


#: The sliding window of :meth:`ReusingRedisCache.admit`, atomic in Redis: drop what left the
#: window, admit members while there is room (each a member of a sorted set scored by Redis's
#: own clock, so every machine counts on one clock), and say until when the window is full.
_ADMIT = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t - window)
local used = redis.call('ZCARD', KEYS[1])
local admitted = 0
for i = 3, #ARGV do
    if used + admitted >= limit then break end
    redis.call('ZADD', KEYS[1], t, ARGV[i])
    admitted = admitted + 1
end
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
local full_until = 0
if used + admitted >= limit then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    full_until = tonumber(oldest[2]) + window
end
return {admitted, tostring(full_until)}
"""


#: :meth:`ReusingRedisCache.read_count_and_derive` as one command. KEYS[1] is the counter, then
#: ARGV[2] keys to read, then the keys ``by``; ARGV[1] is the counter's lifetime (0: no counter),
#: ARGV[3..] the templates of ``derived``. The counter is made to expire by the INCR that creates
#: it, so that needs no second round trip. The derived keys are named here, from values read
#: here: a standalone Redis allows it (a Redis Cluster, which this project does not use, would not).
_READ_COUNT_AND_DERIVE = """
local n = tonumber(ARGV[2])
local values = {}
if n > 0 then values = redis.call('MGET', unpack(KEYS, 2, n + 1)) end
local count = false
if ARGV[1] ~= '0' then
    count = redis.call('INCR', KEYS[1])
    if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
end
local derived = false
if #ARGV > 2 and #KEYS > n + 1 then
    local by = redis.call('MGET', unpack(KEYS, n + 2))
    local known = true
    for i = 1, #by do
        if not by[i] then known = false end
    end
    if known then
        local names = {}
        for i = 3, #ARGV do
            local name = ARGV[i]
            for j = 1, #by do
                -- a function as the replacement: its value is taken as it is (no % escapes)
                name = string.gsub(name, '{' .. (j - 1) .. '}', function() return by[j] end)
            end
            names[#names + 1] = name
        end
        derived = {by, redis.call('MGET', unpack(names))}
    end
end
return {count, values, derived}
"""


class ReusingRedisCacheClient(RedisCacheClient):
    def __init__(self, servers: list[str], **options: Any) -> None:
        super().__init__(servers, **options)
        self._clients: dict[int, Any] = {}
        self._outage = _outage_of(servers)

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        # Private helpers of Django's client, which django-stubs does not declare.
        index = self._get_connection_pool_index(write)  # type: ignore[attr-defined]
        client = self._clients.get(index)
        if client is None:
            pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
            client = self._clients[index] = self._client(connection_pool=pool)  # type: ignore[attr-defined]
        return client


#: Django's client operations, which every cache method of Django's is made of.
_CLIENT_OPERATIONS = (
    "add",
    "get",
    "set",
    "touch",
    "delete",
    "get_many",
    "has_key",
    "incr",
    "set_many",
    "delete_many",
    "clear",
)
for _name in _CLIENT_OPERATIONS:
    setattr(ReusingRedisCacheClient, _name, _guarded(getattr(RedisCacheClient, _name)))


class ReusingRedisCache(_Counting, RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = ReusingRedisCacheClient
        self._scripts: dict[tuple[int, str], Any] = {}
        self._outage = _outage_of(self._servers)  # type: ignore[attr-defined]

    def defer(self, key: str, write: Callable[[], object]) -> None:
        """Do ``write`` once Redis answers again (:func:`best_effort`)."""
        self._outage.defer(key, write)

    def _script(self, client: Any, source: str) -> Any:
        """``source`` registered on ``client``: EVALSHA from then on, its text sent once."""
        script = self._scripts.get((id(client), source))
        if script is None:
            script = self._scripts[(id(client), source)] = client.register_script(source)
        return script

    @_guarded
    def read_count_and_derive(
        self,
        keys: Sequence[str],
        counter: str | None,
        timeout: int,
        by: Sequence[str] = (),
        derived: Sequence[str] = (),
    ) -> tuple[list[Any], int | None, tuple[list[Any], list[Any]] | None]:
        """As :meth:`CountingFileBasedCache.read_count_and_derive`, in one round trip: one Lua
        script, by EVALSHA."""
        serializer: Any = self._cache._serializer  # type: ignore[attr-defined]
        make = self.make_and_validate_key
        names = [make(key) for key in keys]
        counter_name = make(counter) if counter is not None else make("-")
        client = self._cache.get_client(counter_name, write=True)
        ttl = max(1, int(timeout)) if counter is not None else 0
        templates = [make(template) for template in derived] if by else []
        count, raw_values, raw_derived = self._script(client, _READ_COUNT_AND_DERIVE)(
            keys=[counter_name, *names, *(make(key) for key in by)], args=[ttl, len(names), *templates]
        )
        values = [None if raw is None else serializer.loads(raw) for raw in raw_values]
        derived_values = None
        if raw_derived is not None:
            raw_by, raw_found = raw_derived
            derived_values = (
                [serializer.loads(raw) for raw in raw_by],
                [None if raw is None else serializer.loads(raw) for raw in raw_found],
            )
        return values, None if counter is None else int(count), derived_values

    @_guarded
    def hash_add(self, name: str, mapping: dict[str, float]) -> None:
        """Merge ``mapping`` into the hash ``name`` (one HSET; a later write of a key wins)."""
        if mapping:
            key = self.make_and_validate_key(name)
            client: Any = self._cache.get_client(key, write=True)
            client.hset(key, mapping=mapping)

    @_guarded
    def hash_take(self, name: str) -> dict[str, float]:
        """The whole hash ``name``, removed: RENAME to a name of its own first, so adds that
        arrive meanwhile go to a new hash and two takers never share one."""
        key = self.make_and_validate_key(name)
        client = self._cache.get_client(key, write=True)
        taken = f"{key}:taken:{uuid.uuid4().hex}"
        try:
            client.rename(key, taken)
        except redis.ResponseError:  # no such hash: nothing was added
            return {}
        values = client.hgetall(taken)
        client.delete(taken)
        return {
            raw.decode() if isinstance(raw, bytes) else raw: float(value) for raw, value in values.items()
        }

    @_guarded
    def admit(self, name: str, members: Sequence[str], limit: int, window: float) -> tuple[int, float]:
        """Admit as many of ``members`` (distinct names) as fit under ``limit`` admissions in
        any ``window`` seconds, counted across every process and machine; returns how many
        were admitted (the first ones) and, if the window is now full, the Unix time at which
        a place frees (else 0). One round trip: a Lua script, atomic in Redis."""
        key = self.make_and_validate_key(name)
        client = self._cache.get_client(key, write=True)
        admitted, full_until = self._script(client, _ADMIT)(keys=[key], args=[window, limit, *members])
        return int(admitted), float(full_until)

    @_guarded
    def admitted(self, name: str, window: float) -> int:
        """How many admissions ``name`` counted in the last ``window`` seconds."""
        key = self.make_and_validate_key(name)
        client = self._cache.get_client(key)
        seconds, micros = client.time()
        return int(client.zcount(key, f"({seconds + micros / 1e6 - window}", "+inf"))

"""A deadline for the whole of one webhook attempt: connect, TLS handshake, request, headers, body.

urllib3's ``Timeout(total=...)`` is no such deadline: it bounds the connect, then gives what is
left to *each* read of the socket, so a receiver that sends a byte a second never trips it
(issue 23: one header line a second held an attempt for 100 s, a body byte a second for over
200 s, with a 10 s "total"). Checking the clock between reads cannot help either: the reads
happen inside ``http.client``.

So a watchdog thread ends the attempt from outside. While an attempt runs (``with
Deadline(seconds)``), the connection classes below hand it every socket the attempt uses, a
new one as it is made (before the TLS handshake) or a kept-alive one as the request starts.
When the deadline passes, the watchdog shuts the socket down: the read or write blocked in it
returns at once with an error, in whatever phase the attempt is, plain HTTP or TLS alike, and
:attr:`Deadline.expired` tells the sender that this was the deadline, not the receiver.

The watchdog holds a duplicate of the socket's descriptor (``socket.fromfd``) and shuts down
only that: the duplicate keeps the kernel's socket alive, so it can never hit a descriptor
number that the attempt closed and something else (a database connection) reopened.
A shut-down connection is never used again: urllib3 drops a connection whose request failed,
and one that answered just before the deadline fired is found closed by its pool's check
before the next request.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from contextvars import ContextVar
from types import TracebackType
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection

#: The attempt running in this thread (context), if any: where new sockets are handed.
_running: ContextVar[Deadline | None] = ContextVar("webhook_attempt_deadline", default=None)


class Deadline:
    """``with Deadline(seconds):`` the sockets of the attempt inside are shut down at the
    deadline; :attr:`expired` says whether that happened."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self._watched: list[socket.socket] = []  # duplicates, owned here
        self._numbers: set[int] = set()  # the attempt's own descriptors already watched

    def __enter__(self) -> Deadline:
        self._token = _running.set(self)
        _watchdog.arm(self)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        _running.reset(self._token)
        _watchdog.disarm(self)
        for duplicate in self._watched:
            duplicate.close()
        self._watched.clear()

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` (plain or TLS) down at the deadline; at once if it has passed."""
        number = sock.fileno()
        if number < 0 or number in self._numbers:
            return
        self._numbers.add(number)
        _watchdog.watch(self, socket.fromfd(number, sock.family, sock.type))

    def _expire(self) -> None:
        """Called by the watchdog, under its lock."""
        self.expired = True
        for duplicate in self._watched:
            with contextlib.suppress(OSError):
                duplicate.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread per process that expires the attempts past their deadline.

    Made again in a forked child (a Celery pool process): a thread does not survive a fork,
    and a lock held by the parent's thread at that moment would never be released."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._armed: set[Deadline] = set()
        self._thread: threading.Thread | None = None

    def arm(self, deadline: Deadline) -> None:
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="webhook-deadline", daemon=True)
                self._thread.start()
            self._armed.add(deadline)
            self._changed.notify()

    def disarm(self, deadline: Deadline) -> None:
        with self._changed:
            self._armed.discard(deadline)

    def watch(self, deadline: Deadline, duplicate: socket.socket) -> None:
        with self._changed:
            deadline._watched.append(duplicate)
            if deadline.expired or (deadline in self._armed and time.monotonic() >= deadline.at):
                self._armed.discard(deadline)
                deadline._expire()

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                for deadline in [d for d in self._armed if d.at <= now]:
                    self._armed.discard(deadline)
                    deadline._expire()
                soonest = min((d.at for d in self._armed), default=None)
                self._changed.wait(None if soonest is None else soonest - now)


_watchdog = _Watchdog()


def _watch(sock: socket.socket | None) -> None:
    deadline = _running.get()
    if deadline is not None and sock is not None:
        deadline.watch(sock)


class WatchedHTTPConnection(HTTPConnection):
    """urllib3's connection, handing its sockets to the running attempt's :class:`Deadline`.

    ``_new_conn`` is urllib3's own point for making the socket differently (its SOCKS support
    overrides it too); it runs before the TLS handshake, so that is under the deadline too."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)
        return sock

    def request(  # type: ignore[override]
        self, method: str, url: str, body: Any = None, headers: Any = None, **options: Any
    ) -> None:
        _watch(self.sock)  # a kept-alive connection: its socket exists already
        super().request(method, url, body, headers, **options)


class WatchedHTTPSConnection(WatchedHTTPConnection, HTTPSConnection):
    """The same for ``https``: the handshake, the request and the answer under the deadline."""


class HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = WatchedHTTPConnection


class HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = WatchedHTTPSConnection

"""A real HTTP server on 127.0.0.1 that receives webhooks, for the delivery tests.

It answers ``fail_status`` to the first ``fail_first`` requests, then ``status``; it may wait
``delay`` seconds before answering (a slow or dead endpoint) and add headers (``Retry-After``,
``Location``). Every request is kept (headers and body) and counted, so a test waits on the
count instead of sleeping.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    status: int = 200
    fail_first: int = 0
    fail_status: int = 500
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    most_in_flight: int = 0  # the most requests it was answering at one moment

    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def ids(self) -> list[str]:
        with self.lock:
            return [r.headers["webhook-id"] for r in self.requests]


@contextlib.contextmanager
def receiver(**options: Any) -> Iterator[Receiver]:
    state = Receiver(**options)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the sender uses it

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with state.lock:
                state.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                number = len(state.requests)
                state.in_flight += 1
                state.most_in_flight = max(state.most_in_flight, state.in_flight)
            if state.delay:
                time.sleep(state.delay)
            with state.lock:
                state.in_flight -= 1
            code = state.fail_status if number <= state.fail_first else state.status
            self.send_response(code)
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.send_header("content-length", "2")
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Slowloris:
    """What the trickling receiver saw: requests (one per attempt), connections now trickling,
    and connections the sender cut while bytes were still owed."""

    part: str = "headers"
    interval: float = 1.0
    limit: int = 100
    requests: list[Received] = field(default_factory=list)
    trickling: int = 0
    cut: int = 0
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def ids(self) -> list[str]:
        with self.lock:
            return [r.headers["webhook-id"] for r in self.requests]

    def busy(self) -> bool:
        """Whether a delivery is being trickled to right now (the sender still holds it)."""
        with self.lock:
            return self.trickling > 0

    def cuts(self) -> int:
        with self.lock:
            return self.cut


@contextlib.contextmanager
def slowloris(part: str = "headers", interval: float = 1.0, limit: int = 100) -> Iterator[Slowloris]:
    """A receiver that answers one byte every ``interval`` seconds, the attack of issue 23.

    ``part="headers"``: the status line, then a header line a byte at a time; ``"body"``: the
    whole head at once (200, ``content-length``), then the body a byte at a time;
    ``"handshake"`` (for an ``https`` URL): the head of a TLS record that announces a 16 KiB
    ServerHello, then its bytes one at a time, so the sender is held in the handshake. Each byte
    comes well within any per-read timeout, so only a deadline for the whole attempt ends it.
    After ``limit`` bytes it finishes the answer (200), so a sender without such a deadline
    gets a success, late, instead of hanging the test. The connection is closed after each
    answer; ``busy()`` says whether a sender is being trickled to, ``cuts()`` how many senders
    hung up before the answer was complete.
    """
    assert part in ("headers", "body", "handshake")
    state = Slowloris(part=part, interval=interval, limit=limit)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle(self) -> None:
            if state.part != "handshake":
                super().handle()
                return
            self.rfile.read1(65536)  # the ClientHello
            self.wfile.write(b"\x16\x03\x03\x40\x00")  # handshake record, 16,384 bytes to come
            self._held(self._trickle_bytes)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with state.lock:
                state.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
            self._held(self._trickle)
            self.close_connection = True

        def _held(self, trickle: Any) -> None:
            with state.lock:
                state.trickling += 1
            try:
                trickle()
            except OSError:  # the sender hung up: its deadline
                with state.lock:
                    state.cut += 1
            finally:
                with state.lock:
                    state.trickling -= 1

        def _trickle_bytes(self) -> None:
            for _ in range(state.limit):
                if state.stop.wait(state.interval):
                    return
                self.wfile.write(b"\x02")
                self.wfile.flush()

        def _trickle(self) -> None:
            if state.part == "headers":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Trickle: ")
                tail = b"\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
            else:
                self.wfile.write(
                    b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % state.limit
                )
                tail = b""
            for _ in range(state.limit):
                if state.stop.wait(state.interval):
                    return  # the test is over
                self.wfile.write(b"x")
                self.wfile.flush()
            self.wfile.write(tail)
            self.wfile.flush()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    scheme = "https" if part == "handshake" else "http"
    state.url = f"{scheme}://127.0.0.1:{server.server_address[1]}/slow"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        server.shutdown()
        server.server_close()

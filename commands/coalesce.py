"""Group commit of the HTTP device path: concurrent reports and hand-outs settled together.

A device's ``PUT /commands/v0/status/{id}/`` and an inbox poll that runs the hand-out each cost
one transaction of their own, and its commit (a WAL flush) is most of what PostgreSQL spends on
them. The MQTT bridge settles a thousand reports in one transaction (``commands.batches``); this
gives the HTTP door the same economy, without a timer.

:func:`settle` queues the request; the first thread of the process that finds no batch being
settled (fewer than ``DEVICE_SETTLERS``, 1 by default: see below) becomes the *leader*: it takes
what is queued (at most ``DEVICE_BATCH_MAX``), settles it
with ``batches.settle`` — one transaction, on the leader's own database connection (Django's
connections are per thread) — and hands every waiter its own outcome. While it settled, more
requests queued: when it is done, the first of their threads to wake leads the next batch. One
request alone settles at once, with no wait, by the same one statement in autocommit as
before (``batches.settle_alone``: a transaction and the many-report statement cost more for
one); under load the batches grow by themselves, as a database's group commit does. No answer
leaves before its batch has committed (``settle`` returns after the commit), so durability is
as before.

Failures. An outage (``batches.OUTAGE_ERRORS``: nothing committed) is raised in every waiter's
thread, which the views' middleware answers with the same 503 as before. A deadlock with another
process's batch (rows locked in another order) or a serialization failure is not an outage of
anyone's making: the batch is settled again, a few times, before it is one. A request the
database refuses, or a defect while settling one, costs that request only: ``batches.settle``
settles the batch again one by one, in a savepoint each.

``DEVICE_SETTLERS``: how many batches one process settles at once. With 1, a process has one
transaction in flight; its other threads wait for it and go together next. A first rough load
test (docs/performance.md, "The lean device path") found the writes slower that way than one
transaction per request (PostgreSQL already shares WAL flushes among concurrent commits, and a
process's database work is no longer overlapped with its Python work); more settlers give that
overlap back and still batch what arrives while they are all busy. The default stays the
issue's design until the benchmark says which is better.

``DEVICE_GROUP_COMMIT`` turns all this on; it is off by default, since the measurements so far
(docs/performance.md) found the writes slower with it on the 2-CPU box with 4 threads a process:
each request then settles alone, at once, as before.

Inside a transaction (a caller that holds one, the tests' ``db`` fixture) the request is settled
alone, in that transaction: a batch must never commit, or roll back, with a caller's work.
``DEVICE_BATCH_SIZE`` (``dos_device_batch_size``) counts how many settled together.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from django.conf import settings
from django.db import OperationalError, connection

from commands import batches
from commands.batches import Outcome, Request
from config.metrics import DEVICE_BATCH_SIZE

logger = logging.getLogger(__name__)

#: SQLSTATEs that say "try the transaction again": deadlock_detected, serialization_failure.
RETRIED_SQLSTATES = frozenset({"40P01", "40001"})
#: Settles of one batch before such a failure is answered as an outage (503, Retry-After).
ATTEMPTS = 3


def _retried(error: BaseException) -> bool:
    cause = error.__cause__
    return isinstance(error, OperationalError) and getattr(cause, "sqlstate", None) in RETRIED_SQLSTATES


@dataclass(eq=False)
class _Waiter:
    """One request in the queue, and what it came to once its batch was settled."""

    request: Request
    done: bool = False
    outcome: Outcome | None = None
    error: BaseException | None = None


@dataclass(eq=False)
class GroupCommit:
    """The queue of one process and its leader (see the module's docstring)."""

    _lock: threading.Condition = field(default_factory=threading.Condition)
    _queue: list[_Waiter] = field(default_factory=list)
    _running: int = 0  # batches being settled now (at most ``DEVICE_SETTLERS``)

    def settle(self, request: Request) -> Outcome:
        """``request`` settled, maybe with others of this process, after its batch committed."""
        mine = _Waiter(request)
        if connection.in_atomic_block:
            self._run([mine])
            return self._result(mine)
        with self._lock:
            self._queue.append(mine)
            while True:
                while self._running >= settings.DEVICE_SETTLERS and not mine.done:
                    self._lock.wait()
                if mine.done:
                    return self._result(mine)
                # A settler is free and this request is still queued: lead the next batch.
                self._running += 1
                cap = settings.DEVICE_BATCH_MAX
                batch, self._queue[:cap] = self._queue[:cap], []
                self._lock.release()
                try:
                    self._run(batch)
                finally:
                    self._lock.acquire()
                    self._running -= 1
                    self._lock.notify_all()

    @staticmethod
    def _run(batch: list[_Waiter]) -> None:
        """Settle ``batch`` in one transaction; each waiter gets its outcome, or the error that
        left nothing committed."""
        DEVICE_BATCH_SIZE.observe(len(batch))
        error: BaseException | None = None
        outcomes: list[Outcome] = []
        for attempt in range(1, ATTEMPTS + 1):
            try:
                if len(batch) == 1:  # alone: the one-statement path, no slower than before
                    outcomes = [batches.settle_alone(batch[0].request)]
                else:
                    outcomes = batches.settle([waiter.request for waiter in batch])
                error = None
                break
            except BaseException as failed:  # every waiter must hear of it, whatever it is
                error = failed
                if not (_retried(failed) and attempt < ATTEMPTS and not connection.in_atomic_block):
                    break
                logger.warning("a batch of %d device requests settled again: %s", len(batch), failed)
        for index, waiter in enumerate(batch):
            if error is None:
                waiter.outcome = outcomes[index]
            else:
                waiter.error = error
            waiter.done = True  # last: a waiter that sees it done finds its answer there

    @staticmethod
    def _result(waiter: _Waiter) -> Outcome:
        if waiter.error is not None:
            raise waiter.error
        assert waiter.outcome is not None
        return waiter.outcome


#: This process's queue: every thread of a web process shares it.
DEVICE_REQUESTS = GroupCommit()


def settle(request: Request) -> Outcome:
    """``request`` (a report or a hand-out) settled in this process's next batch, with
    ``DEVICE_GROUP_COMMIT``; without it (the default), on its own, at once."""
    if not settings.DEVICE_GROUP_COMMIT:
        return batches.settle_alone(request)
    return DEVICE_REQUESTS.settle(request)


def hand_out(tenant_id: int, device_pk: int, device_id: str, actor: str, limit: int) -> Outcome:
    """An inbox poll's hand-out (``batches.HandOutRequest``) settled in this process's next batch."""
    return settle(batches.HandOutRequest(tenant_id, device_pk, device_id, actor, limit))

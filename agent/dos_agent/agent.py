"""One device's agent: fetch commands, run them one at a time, report, never forget.

The loop (:meth:`DeviceAgent.run`):

1. :meth:`resume` what the journal holds from before a restart: send the reports not yet
   acknowledged, then finish the command in hand (``journal`` says how).
2. Fetch: a poll of the HTTP inbox with the last ETag, or, when a notify came over MQTT, an
   ``inbox/get`` over MQTT (HTTP if no reply comes).
3. Run each command handed out: journal it, report Acknowledged (and In Progress), run its
   handler, journal the outcome and report it. A report is retried until the server answers
   it (a repeat is a no-op there); a 400/404 means the command is over or gone, and it is
   dropped. A command whose acknowledgement is refused (cancelled, timed out meanwhile) is
   not run.
4. Wait: ``next_poll_seconds`` as the server said (it jitters it; with a live MQTT session it
   is long), or less when a notify arrives; at once after a non-empty batch (the inbox hands
   out 20 at a time). After a 429/503, what ``Retry-After`` says; after a network error or
   another refusal, a capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Protocol

from dos_agent import ladder
from dos_agent.backoff import Backoff, jittered, throttled_delay
from dos_agent.config import AgentConfig, HandlerSpec
from dos_agent.handlers import TAIL_CHARS, Outcome, tail
from dos_agent.http_api import DeviceApi, Refused, Throttled, Unreachable
from dos_agent.journal import Job, Journal, Report, finished_key
from dos_agent.mqtt_channel import MqttChannel, NoReply, cancel

logger = logging.getLogger(__name__)

#: The poll interval until the server says one (the server's default).
DEFAULT_POLL_SECONDS = 30.0
#: Own jitter on a 304's poll interval (a 304 has no body to carry a new one).
POLL_JITTER = 0.1


class Runner(Protocol):
    """What runs commands: :class:`dos_agent.handlers.Handlers`, or the simulator's."""

    def spec_for(self, command_type: str) -> HandlerSpec: ...

    async def run(self, command: dict[str, Any], device_id: str) -> Outcome: ...


class Observer(Protocol):
    """Told of each command's end: the simulator's summary is made of these."""

    def command_done(self, device_id: str, final_state: str, latency: float | None) -> None: ...


@dataclass
class Counters:
    polls: int = 0
    not_modified: int = 0
    throttled: int = 0
    errors: int = 0
    mqtt_fetches: int = 0
    mqtt_reports: int = 0
    http_reports: int = 0


class Stopping(Exception):
    """The agent was asked to stop while waiting to retry: the journal keeps what is left."""


class DeviceAgent:
    def __init__(
        self,
        config: AgentConfig,
        api: DeviceApi,
        runner: Runner,
        journal: Journal,
        observer: Observer | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.api = api
        self.runner = runner
        self.journal = journal
        self.observer = observer
        self.rng = rng or random.Random()
        self.backoff = Backoff(cap=config.max_backoff, rng=self.rng)
        self.counters = Counters()
        #: What the server last said (``next_poll_seconds``), and the wait derived from it.
        self.server_poll = DEFAULT_POLL_SECONDS
        self.next_poll = DEFAULT_POLL_SECONDS
        self.channel: MqttChannel | None = None
        if config.mqtt:
            self.channel = MqttChannel(
                api.mqtt_credentials,
                self._notified,
                self._mqtt_connected,
                self._mqtt_lost,
                self._handed_out_late,
            )
        #: Commands of an inbox/get reply that came after its wait: run at the next cycle.
        self._late: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._notified_at: float | None = None
        self._again_by_mqtt = False

    # --- control -------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def _notified(self, _body: dict[str, Any]) -> None:
        if self._notified_at is None:
            self._notified_at = time.monotonic()
        self._wake.set()

    def _handed_out_late(self, reply: dict[str, Any]) -> None:
        commands = [c for c in reply.get("commands", []) if isinstance(c, dict)]
        if commands:
            self._late.extend(commands)
            self._wake.set()

    def _mqtt_connected(self) -> None:
        """A new session may have missed notifies: look at the inbox now."""
        self._notified(_body={})

    def _mqtt_lost(self) -> None:
        """No push any more: the long interval the server gave for a live session no longer
        holds. Poll now over HTTP, which answers the interval of a device without one."""
        self.server_poll = self.next_poll = DEFAULT_POLL_SECONDS
        self._wake.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep before a retry; :class:`Stopping` if the agent is stopped meanwhile."""
        try:
            await asyncio.wait_for(self._stopped.wait(), timeout=seconds)
        except TimeoutError:
            return
        raise Stopping

    async def _wait(self, seconds: float) -> None:
        """Until the next fetch: ``seconds``, a notify, or a stop, whichever comes first."""
        if seconds > 0 and not self._wake.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()

    # --- the loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        mqtt_task = asyncio.create_task(self.channel.run()) if self.channel else None
        try:
            await self._pause(self.rng.uniform(0, self.config.start_jitter))
            await self.resume()
            while not self._stopped.is_set():
                await self._wait(await self._cycle())
        except Stopping:
            pass
        finally:
            await cancel(mqtt_task)

    async def _cycle(self) -> float:
        """One fetch and the commands it brought; the seconds to wait until the next."""
        self._wake.clear()  # this fetch answers every wake-up so far; a notify during it wakes again
        notified_at, self._notified_at = self._notified_at, None
        started = time.monotonic()
        late, self._late = self._late, []
        for command in late:  # handed out by a reply that came too late for its fetch
            await self.execute(command, notified_at or started)
        commands = None
        by_mqtt, self._again_by_mqtt = notified_at is not None or self._again_by_mqtt, False
        if by_mqtt and self.channel is not None and self.channel.connected.is_set():
            commands = await self._fetch_mqtt()
            # a full batch may leave more: ask again the same way, not by an HTTP poll
            self._again_by_mqtt = bool(commands)
        if commands is None:
            fetched = await self._fetch_http()
            if isinstance(fetched, float):
                return fetched
            commands = fetched
        for command in commands:
            await self.execute(command, notified_at or started)
        return 0.0 if commands else self.next_poll

    async def _fetch_mqtt(self) -> list[dict[str, Any]] | None:
        assert self.channel is not None
        try:
            reply = await self.channel.inbox_get()
        except NoReply as failed:
            logger.info("%s: inbox/get over MQTT: %s; polling over HTTP", self.api.device_id, failed)
            return None
        self.counters.mqtt_fetches += 1
        logger.info(
            "%s: inbox/get over MQTT: %d commands", self.api.device_id, len(reply.get("commands", []))
        )
        poll = reply.get("next_poll_seconds")
        if isinstance(poll, int | float) and poll > 0:
            self.server_poll = self.next_poll = float(poll)
        return [c for c in reply.get("commands", []) if isinstance(c, dict)]

    async def _fetch_http(self) -> list[dict[str, Any]] | float:
        """The commands of one poll, or the seconds to wait after a failed one."""
        self.counters.polls += 1
        state = self.journal.state
        try:
            answer = await self.api.poll_inbox(state.etag)
        except Throttled as throttled:
            self.counters.throttled += 1
            delay = throttled_delay(throttled.retry_after, self.backoff, self.rng)
            logger.warning("%s: inbox %s; next poll in %.1f s", self.api.device_id, throttled, delay)
            return delay
        except (Unreachable, Refused) as failed:
            self.counters.errors += 1
            delay = self.backoff.next_delay()
            logger.warning("%s: inbox: %s; next poll in %.1f s", self.api.device_id, failed, delay)
            return delay
        self.backoff.reset()
        if answer.not_modified:
            self.counters.not_modified += 1
            self.next_poll = jittered(self.server_poll, POLL_JITTER, self.rng)
        elif answer.next_poll_seconds is not None:
            self.server_poll = self.next_poll = answer.next_poll_seconds
        if answer.etag != state.etag:
            state.etag = answer.etag
            self.journal.save()
        return answer.commands

    # --- one command ---------------------------------------------------------------------------

    async def execute(self, command: dict[str, Any], triggered_at: float | None = None) -> None:
        state = self.journal.state
        key = finished_key(command)
        if key in state.finished:
            # Handed out again after it finished here (its report was lost on the way and the
            # redelivery came first): report the outcome again rather than run it twice.
            await self._deliver(self._report(command, state.finished[key], "already finished on the device"))
            return
        job = Job(dict(command))
        state.current = job
        if not await self._deliver(self._report(command, ladder.ACKNOWLEDGED)):
            logger.info("%s: command %s refused its acknowledgement: not run", self.api.device_id, key)
            state.current = None
            self.journal.save()
            return
        await self._run_job(job, triggered_at)

    async def _run_job(self, job: Job, triggered_at: float | None) -> None:
        job.phase = "running"
        job.runs += 1
        self.journal.save()
        if self.config.report_in_progress and not await self._deliver(
            self._report(job.command, ladder.IN_PROGRESS)
        ):
            self.journal.state.current = None  # cancelled or timed out meanwhile
            self.journal.save()
            return
        outcome = await self.runner.run(job.command, self.api.device_id)
        await self._finish(job, outcome, triggered_at)

    async def _finish(self, job: Job, outcome: Outcome, triggered_at: float | None) -> None:
        final = ladder.SUCCESS if outcome.success else ladder.FAILURE
        state = self.journal.state
        state.current = None
        state.finish(job.key, final)
        accepted = await self._deliver(self._report(job.command, final, outcome.reason, outcome.details))
        if self.observer is not None:
            latency = None if triggered_at is None else time.monotonic() - triggered_at
            self.observer.command_done(self.api.device_id, final if accepted else "REFUSED", latency)

    async def resume(self) -> None:
        """Finish what a previous run left: the reports first, then the command in hand.

        A command whose handler had not started is acknowledged (again: a no-op) and run. One
        whose handler was running when the agent died is handled as its handler's ``resume``
        says: ``rerun`` (the default: handlers are written to be run again, as the server's
        at-least-once delivery already demands; after ``max_interrupted_runs`` restarts in a
        row it fails instead, so a handler that kills the agent cannot loop forever),
        ``succeed`` (a reboot: the restart is its success) or ``fail``."""
        await self._flush()
        job = self.journal.state.current
        if job is None:
            return
        logger.info("%s: resuming command %s (%s)", self.api.device_id, job.key, job.phase)
        if job.phase == "received":
            if await self._deliver(self._report(job.command, ladder.ACKNOWLEDGED)):
                await self._run_job(job, None)
            else:
                self.journal.state.current = None
                self.journal.save()
            return
        spec = self.runner.spec_for(str(job.command.get("command", "")))
        if spec.resume == "succeed":
            await self._finish(job, Outcome(True, "finished across an agent restart"), None)
        elif spec.resume == "fail":
            await self._finish(job, Outcome(False, "interrupted by an agent restart"), None)
        elif job.runs >= self.config.max_interrupted_runs:
            await self._finish(job, Outcome(False, f"interrupted by {job.runs} agent restarts"), None)
        else:
            await self._run_job(job, None)

    # --- reports -----------------------------------------------------------------------------------

    def _report(
        self, command: dict[str, Any], state: str, reason: str = "", details: dict[str, Any] | None = None
    ) -> Report:
        attempt = command.get("attempt")
        return Report(
            command_id=str(command["id"]),
            state=state,
            reason=tail(reason, TAIL_CHARS),
            details=details,
            attempt=attempt if isinstance(attempt, int) else None,
        )

    async def _deliver(self, report: Report) -> bool:
        """Journal ``report`` (with whatever else changed in the state) and send the outbox
        up to it: whether the server took it (False: refused, the command is over or gone)."""
        self.journal.state.outbox.append(report)
        self.journal.save()
        return (await self._flush()).get(id(report), False)

    async def _flush(self) -> dict[int, bool]:
        """Send the outbox in order, each report until the server answers it."""
        outbox = self.journal.state.outbox
        answered: dict[int, bool] = {}
        while outbox:
            report = outbox[0]
            answered[id(report)] = await self._send(report)
            outbox.pop(0)
            self.journal.save()
        return answered

    async def _send(self, report: Report) -> bool:
        backoff = Backoff(cap=self.config.max_backoff, rng=self.rng)
        while True:
            if self.channel is not None and self.channel.connected.is_set():
                try:
                    accepted, reply = await self.channel.update(report.command_id, report.body())
                except NoReply as failed:
                    logger.info("%s: update over MQTT: %s; over HTTP", self.api.device_id, failed)
                else:
                    self.counters.mqtt_reports += 1
                    if accepted:
                        return True
                    if _final_refusal(reply):
                        logger.warning("%s: report %s refused: %s", self.api.device_id, report, reply)
                        return False
                    await self._pause(backoff.next_delay())  # the server's trouble: try again
                    continue
            try:
                await self.api.put_status(report.command_id, report.body())
            except Throttled as throttled:
                self.counters.throttled += 1
                await self._pause(throttled_delay(throttled.retry_after, backoff, self.rng))
            except Unreachable as failed:
                self.counters.errors += 1
                delay = backoff.next_delay()
                logger.warning("%s: report: %s; again in %.1f s", self.api.device_id, failed, delay)
                await self._pause(delay)
            except Refused as refused:
                if refused.status in (400, 404, 409):
                    logger.warning("%s: report %s refused: %s", self.api.device_id, report, refused)
                    return False
                self.counters.errors += 1  # 401/403: the token; keep it and try again later
                await self._pause(backoff.next_delay())
            else:
                self.counters.http_reports += 1
                return True


def _final_refusal(rejected: dict[str, Any]) -> bool:
    """Whether an MQTT ``update/rejected`` is final, as an HTTP 4xx but 429 is: the reply's
    ``status`` (the HTTP status the same PUT would get; ``code`` is the error's name), else a
    numeric ``code``."""
    status = rejected.get("status", rejected.get("code"))
    return isinstance(status, int) and 400 <= status < 500 and status != 429

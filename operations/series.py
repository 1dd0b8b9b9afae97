"""The series sweep: each due firing of a RECURRING operation makes its run, exactly once.

Why a sweep task in ``CELERY_BEAT_SCHEDULE`` (every ``SERIES_SWEEP_SECONDS``) rather than one
django-celery-beat ``PeriodicTask`` per series, as maintenance schedules have:

- exactly once does not rest on beat at all. The sweep locks the due series' row
  (``FOR UPDATE SKIP LOCKED``: a second sweep, from a second beat or a redelivered message,
  skips it) and the run is a row unique on (parent, scheduled_for): a sweep that races past
  the lock anyway, or repeats after a crash, finds the firing made and only moves on;
- a device-time firing is made 14 hours before its wall clock (the zone furthest ahead), a
  console one at its instant in the creator's zone, DST included: Quartz's calendar
  (``config.quartz``) computes both; a crontab in UTC can say neither, and a ``PeriodicTask``
  would need the crontab superset and guard of maintenance (minute resolution only);
- one indexed query (``operations_series_due``) serves any number of series, where beat's
  ``DatabaseScheduler`` reloads its whole table whenever one entry changes (a pause, a
  resume, a run counted);
- pause, resume, cancel, bounds and ``max_runs`` are columns of the series' row, changed in the
  transaction that changes its state, with no second table to keep in step.

A firing the sweep comes to late (an outage) is still made while its window can open; one
whose window has closed everywhere is skipped, as a paused series' firings are.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from operations import progress, recurring, services
from operations.choices import TERMINAL_STATES, OperationState, ScheduleType
from operations.models import Operation

logger = logging.getLogger(__name__)
S = OperationState
#: Runs one series may make in one sweep (a series firing every second after an outage).
MAX_RUNS_PER_SWEEP = 100


def series() -> Any:
    """Every series, whatever its state."""
    return Operation.objects.filter(schedule_type=ScheduleType.RECURRING)


def fire_due(now: dt.datetime | None = None) -> int:
    """Make the runs of every due firing; returns how many runs this call made."""
    now = now or timezone.now()
    due = series().filter(state=S.SCHEDULED, next_due_at__lte=now).values_list("pk", flat=True)
    return sum(fire_one(series_id, now) for series_id in list(due))


def fire_one(series_id: Any, now: dt.datetime) -> int:
    """The due firings of one series, holding its row: none if another sweep holds it."""
    made = 0
    with transaction.atomic():
        current = (
            series()
            .select_for_update(skip_locked=True)
            .filter(pk=series_id, state=S.SCHEDULED, next_due_at__lte=now)
            .first()
        )
        if current is None:
            return 0
        parsed = recurring.Series.from_args(current.schedule_args)
        fire: dt.datetime | None = current.next_run_at
        runs = current.runs_count
        for _ in range(MAX_RUNS_PER_SWEEP):
            if fire is None or parsed.due_at(fire) > now:
                break
            if parsed.still_useful(fire, now):
                if services.make_run(current, fire, parsed.run_window(fire)) is not None:
                    made += 1
                    runs += 1
            else:
                logger.info(
                    "series %s: firing %s skipped, its window closed before it was made", series_id, fire
                )
            nexts = parsed.firings_after(fire, 1, runs)
            fire = nexts[0] if nexts else None
        if fire is not None and not parsed.still_useful(fire, now):
            fire = parsed.first_useful_after(now, runs)
        Operation.objects.filter(pk=current.pk).update(
            next_run_at=fire,
            next_due_at=parsed.due_at(fire) if fire is not None else None,
            runs_count=F("runs_count") + made,
            updated_at=timezone.now(),
        )
    return made


def finish_ended() -> int:
    """A series with no firing left finishes once its runs have: COMPLETED, then SUCCESS if
    every run succeeded, FAILURE if one did not or none was made. Each step is a
    ``progress.move``, so two sweeps finish it once."""
    ended = series().filter(state=S.SCHEDULED, next_run_at__isnull=True)
    count = 0
    for series_id in list(ended.values_list("pk", flat=True)):
        runs = Operation.objects.filter(parent_id=series_id)
        if runs.exclude(state__in=TERMINAL_STATES).exists():
            continue
        if not progress.move(series_id, S.COMPLETED, "no firing left", only_from=[S.SCHEDULED]):
            continue
        made = runs.count()
        if made and not runs.exclude(state=S.SUCCESS).exists():
            progress.move(series_id, S.SUCCESS, f"all {made} runs succeeded")
        else:
            failed = runs.exclude(state=S.SUCCESS).count()
            why = "no run was made" if not made else f"{failed} of {made} runs did not succeed"
            progress.move(series_id, S.FAILURE, why)
        count += 1
    return count


def sweep(now: dt.datetime | None = None) -> dict[str, int]:
    """The beat task's body: make due runs, then finish series that have ended."""
    return {"runs_made": fire_due(now), "series_finished": finish_ended()}

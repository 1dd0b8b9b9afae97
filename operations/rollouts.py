"""A rollout (contract section 9): how an operation reaches its devices safely.

Waves, a rate, abort criteria, retries and an in-progress timeout, as AWS IoT Jobs
(``jobExecutionsRolloutConfig``, ``abortConfig``, ``jobExecutionsRetryConfig``,
``timeoutConfig``) and hawkBit (rollout groups with success thresholds) offer them. This
module holds the definition only: parsing and validation (every refusal names its field),
wave sizes, and the abort rules as conditions on the operation's exact counters.
:func:`parse` is the one definition of a valid rollout: the API and the console call it, and
the API's published schema takes its ranges and keys from the constants here
(``tests/test_rollouts.py`` feeds both the same edge values). Where each knob acts: waves and
the rate at hand-out (``commands.services.hand_out``), retries and the in-progress timeout on
the command rows (``commands.services``), abort and wave closing at settlement
(``operations.settlement``), pause and resume in ``operations.services``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.db.models import F, Q
from django.db.models.lookups import GreaterThanOrEqual

from commands import counting
from config.errors import DomainError
from operations.models import Operation

#: At most this many waves (contract section 9).
MAX_WAVES = 20
MAX_PER_MINUTE = 100_000
MAX_ATTEMPTS = 10
MAX_TIMEOUT_MINUTES = 7 * 24 * 60
MAX_MIN_EXECUTED = 100_000_000
DEFAULT_WAVE_SUCCESS_PERCENT = 90.0
#: The failure types of abort and retry rules: what each counts.
FAILURE_TYPES = ("FAILED", "TIMED_OUT", "ALL")
#: At most this many rules in ``abort``: several of one type make sense there (each is a trip
#: wire of its own: FAILED 50% after 10 devices, FAILED 10% after 100).
MAX_RULES = len(FAILURE_TYPES) * 4
#: At most one retry rule per failure type: two budgets for the same failure have no winner.
MAX_RETRY_RULES = len(FAILURE_TYPES)
#: The keys of a rollout and of its rules; any other is refused (a typo must not pass unseen).
ROLLOUT_KEYS = frozenset(
    {"waves", "wave_success_percent", "max_per_minute", "abort", "retries", "in_progress_timeout_minutes"}
)
ABORT_KEYS = frozenset({"failure_type", "threshold_percent", "min_executed"})
RETRY_KEYS = frozenset({"failure_type", "max_attempts"})


@dataclass(frozen=True)
class Bounds:
    """The range of one number of a rollout, held in one place: :func:`parse` refuses what lies
    outside it, and the API's schema (``operations.api.serializers``) publishes it, so the two
    cannot drift apart."""

    low: int | float
    high: int | float
    integer: bool = False
    #: The low end itself is refused (a percent "greater than 0").
    low_exclusive: bool = False

    def holds(self, value: int | float) -> bool:
        above = value > self.low if self.low_exclusive else value >= self.low
        return above and value <= self.high

    def refusal(self) -> str:
        """Why a value outside is refused, in words that follow the field's name."""
        if self.integer:
            return f"must be {self.low} to {self.high:,}"
        if self.low_exclusive:
            return f"must be greater than {self.low:g} and at most {self.high:g}"
        return f"must be {self.low:g} to {self.high:g}"


#: A wave's cumulative percent of the devices.
WAVE_PERCENT = Bounds(0, 100, low_exclusive=True)
WAVE_SUCCESS_PERCENT = Bounds(0, 100)
PER_MINUTE = Bounds(1, MAX_PER_MINUTE, integer=True)
THRESHOLD_PERCENT = Bounds(0, 100, low_exclusive=True)
MIN_EXECUTED = Bounds(1, MAX_MIN_EXECUTED, integer=True)
ATTEMPTS = Bounds(1, MAX_ATTEMPTS, integer=True)
TIMEOUT_MINUTES = Bounds(1, MAX_TIMEOUT_MINUTES, integer=True)
#: The ``error_code`` of every refusal of :func:`parse`.
INVALID_ROLLOUT = "invalid_rollout"
#: The wave a command is written with until its operation's waves are drawn (after the
#: fan-out has counted the devices): above any real wave, so the inbox holds it back.
UNDRAWN_WAVE = 32767


@dataclass(frozen=True)
class AbortRule:
    failure_type: str
    threshold_percent: float
    min_executed: int = 1

    def count_expression(self) -> Any:
        """The operation's counter of this rule's failures (``FAILED``: Command Failure;
        ``TIMED_OUT``: TimeOut after the device received it; ``ALL``: any failure)."""
        if self.failure_type == "FAILED":
            return F("failed_count") - F("timed_out_count")
        if self.failure_type == "TIMED_OUT":
            return F("timed_out_count")
        return F("failed_count") + F("dispatch_failed_count")

    def count(self, counts: dict[str, int]) -> int:
        if self.failure_type == "FAILED":
            return counts["failed_count"] - counts["timed_out_count"]
        if self.failure_type == "TIMED_OUT":
            return counts["timed_out_count"]
        return counts["failed_count"] + counts["dispatch_failed_count"]

    def describe(self) -> str:
        return f"{self.failure_type} >= {self.threshold_percent:g}% after {self.min_executed} devices"


@dataclass(frozen=True)
class RetryRule:
    failure_type: str
    max_attempts: int


@dataclass(frozen=True)
class Rollout:
    """A validated rollout. ``as_json`` is what the API shows back, defaults filled in."""

    waves: tuple[float, ...] = ()
    wave_success_percent: float = DEFAULT_WAVE_SUCCESS_PERCENT
    max_per_minute: int | None = None
    abort: tuple[AbortRule, ...] = ()
    retries: tuple[RetryRule, ...] = field(default=())
    in_progress_timeout_minutes: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "waves": [_number(p) for p in self.waves] or None,
            "wave_success_percent": _number(self.wave_success_percent),
            "max_per_minute": self.max_per_minute,
            "abort": [
                {
                    "failure_type": rule.failure_type,
                    "threshold_percent": _number(rule.threshold_percent),
                    "min_executed": rule.min_executed,
                }
                for rule in self.abort
            ],
            "retries": [
                {"failure_type": rule.failure_type, "max_attempts": rule.max_attempts}
                for rule in self.retries
            ],
            "in_progress_timeout_minutes": self.in_progress_timeout_minutes,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> Rollout | None:
        """A stored rollout (already validated) back as an object; None for none. Checks added
        since it was stored (one retry rule per type) do not refuse it: it stays readable."""
        return parse(raw, stored=True) if raw else None

    def wave_ends(self, devices: int) -> list[int]:
        """The cumulative device count at the end of each wave: ceil(p_k * N / 100)."""
        return [math.ceil(percent * devices / 100 - 1e-9) for percent in self.waves]

    def max_attempts(self, failure_type: str) -> int:
        """Deliveries a command may get when it fails this way (``FAILED`` or ``TIMED_OUT``).

        The rule of that type wins over ``ALL``, which covers the types no rule names: with
        ``FAILED`` 2 and ``ALL`` 5 a Command Failure gets 2 deliveries and a TimeOut 5, as
        the more specific rule is the one written for that failure. :func:`parse` refuses two
        rules of one type; a rollout stored before that keeps its largest budget of the type.
        """
        for wanted in (failure_type, "ALL"):
            found = [rule.max_attempts for rule in self.retries if rule.failure_type == wanted]
            if found:
                return max(found)
        return 1

    @property
    def timeout_seconds(self) -> int | None:
        return None if self.in_progress_timeout_minutes is None else self.in_progress_timeout_minutes * 60

    def abort_condition(self, rule: AbortRule) -> Q:
        """The rule as a condition on the operation row, checked in the UPDATE that aborts."""
        finished = counting.finished()
        return Q(GreaterThanOrEqual(finished, rule.min_executed)) & Q(
            GreaterThanOrEqual(rule.count_expression() * 100, finished * rule.threshold_percent)
        )

    def tripped(self, counts: dict[str, int]) -> tuple[AbortRule, float, int] | None:
        """The first abort rule the counters meet, with the measured rate and finished count."""
        finished = sum(counts[name] for name in counting.FINISHED)
        for rule in self.abort:
            failures = rule.count(counts)
            if finished >= rule.min_executed and failures * 100 >= rule.threshold_percent * finished:
                return rule, (100.0 * failures / finished if finished else 0.0), finished
        return None


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _fail(name: str, message: str) -> DomainError:
    return DomainError({f"rollout.{name}": [message]}, code=INVALID_ROLLOUT)


def _percent(value: Any, name: str, bounds: Bounds) -> float:
    # An int is never infinite, and one too big for a float would overflow isfinite: the range
    # check below refuses it.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(name, "must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(name, "must be a number")
    if not bounds.holds(value):
        raise _fail(name, bounds.refusal())
    return float(value)


def _integer(value: Any, name: str, bounds: Bounds) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, "must be an integer")
    if not bounds.holds(value):
        raise _fail(name, bounds.refusal())
    return value


def _failure_type(value: Any, name: str) -> str:
    if value not in FAILURE_TYPES:
        raise _fail(name, f"must be one of {', '.join(FAILURE_TYPES)}")
    return str(value)


def _rules(raw: Any, name: str, most: int) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(raw, list):
        raise _fail(name, "must be a list")
    if len(raw) > most:
        raise _fail(name, f"at most {most} rules")
    found = []
    for index, rule in enumerate(raw):
        if not isinstance(rule, dict):
            raise _fail(f"{name}[{index}]", "must be an object")
        found.append((f"{name}[{index}]", rule))
    return found


def parse(raw: Any, stored: bool = False) -> Rollout:
    """Validate a request's ``rollout``; a :class:`DomainError` (400) names the bad field.

    ``stored``: a rollout saved before the one-retry-rule-per-type check, read back.
    """
    if not isinstance(raw, dict):
        raise DomainError({"rollout": ["must be an object"]}, code=INVALID_ROLLOUT)
    unknown = sorted(set(raw) - ROLLOUT_KEYS)
    if unknown:
        raise _fail(unknown[0], f"unknown key; use {', '.join(sorted(ROLLOUT_KEYS))}")
    waves: tuple[float, ...] = ()
    if raw.get("waves") is not None:
        if not isinstance(raw["waves"], list) or not raw["waves"]:
            raise _fail("waves", "must be a non-empty list of percentages")
        if len(raw["waves"]) > MAX_WAVES:
            raise _fail("waves", f"at most {MAX_WAVES} waves")
        waves = tuple(_percent(p, f"waves[{i}]", WAVE_PERCENT) for i, p in enumerate(raw["waves"]))
        if any(later <= earlier for earlier, later in itertools.pairwise(waves)):
            raise _fail("waves", "must be strictly increasing cumulative percentages")
        if waves[-1] != 100:
            raise _fail("waves", "the last wave must be 100")
    success = DEFAULT_WAVE_SUCCESS_PERCENT
    if raw.get("wave_success_percent") is not None:
        success = _percent(raw["wave_success_percent"], "wave_success_percent", WAVE_SUCCESS_PERCENT)
    rate = None
    if raw.get("max_per_minute") is not None:
        rate = _integer(raw["max_per_minute"], "max_per_minute", PER_MINUTE)
    abort = []
    for name, rule in _rules(raw.get("abort") or [], "abort", MAX_RULES):
        extra = sorted(set(rule) - ABORT_KEYS)
        if extra:
            raise _fail(f"{name}.{extra[0]}", "unknown key")
        if "threshold_percent" not in rule:
            raise _fail(f"{name}.threshold_percent", "is required")
        abort.append(
            AbortRule(
                failure_type=_failure_type(rule.get("failure_type"), f"{name}.failure_type"),
                threshold_percent=_percent(
                    rule["threshold_percent"], f"{name}.threshold_percent", THRESHOLD_PERCENT
                ),
                min_executed=_integer(rule.get("min_executed", 1), f"{name}.min_executed", MIN_EXECUTED),
            )
        )
    retries: list[RetryRule] = []
    given: dict[str, int] = {}
    most = MAX_RULES if stored else MAX_RETRY_RULES
    for index, (name, rule) in enumerate(_rules(raw.get("retries") or [], "retries", most)):
        extra = sorted(set(rule) - RETRY_KEYS)
        if extra:
            raise _fail(f"{name}.{extra[0]}", "unknown key")
        if "max_attempts" not in rule:
            raise _fail(f"{name}.max_attempts", "is required")
        failure_type = _failure_type(rule.get("failure_type"), f"{name}.failure_type")
        if failure_type in given and not stored:
            raise _fail(
                f"{name}.failure_type",
                f"{failure_type} has a rule already (retries[{given[failure_type]}]): one rule per "
                "failure type; a FAILED or TIMED_OUT rule wins over ALL for its failures",
            )
        given.setdefault(failure_type, index)
        retries.append(
            RetryRule(
                failure_type=failure_type,
                max_attempts=_integer(rule["max_attempts"], f"{name}.max_attempts", ATTEMPTS),
            )
        )
    timeout = None
    if raw.get("in_progress_timeout_minutes") is not None:
        timeout = _integer(raw["in_progress_timeout_minutes"], "in_progress_timeout_minutes", TIMEOUT_MINUTES)
    return Rollout(
        waves=waves,
        wave_success_percent=success,
        max_per_minute=rate,
        abort=tuple(abort),
        retries=tuple(retries),
        in_progress_timeout_minutes=timeout,
    )


@lru_cache(maxsize=4096)
def rollout_of(operation_id: str) -> Rollout | None:
    """An operation's rollout, read once per process: it never changes after creation."""
    raw = Operation.objects.filter(pk=operation_id).values_list("rollout", flat=True).first()
    return Rollout.from_json(raw)

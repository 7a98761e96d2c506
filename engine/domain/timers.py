"""Time in definitions: a state's `timeouts`, ISO 8601 durations, and the timers an instance has pending.

A state may declare timeouts:

    "timeouts": [{"id": "escalate", "after": "P3D", "trigger": {"topic": "escalate", "content": {…}},
                  "repeat": true}]

When an instance has stayed in the state for `after`, the trigger is sent to it through the ordinary trigger path.
`after` is an ISO 8601 duration (`PT90M`, `P3D`, `P1W`), or a CEL expression giving a duration, a timestamp or a
string holding either (`context.dueAt`). `repeat` (true, or the most firings of one visit) fires it again every
`after` while the instance stays.

A timer belongs to one *visit* of its state: from the event that entered the state (its entry sequence) until
the instance moves to another state or stops waiting. A transition back to the same state keeps the visit. A
pending timer is recorded by `TimerScheduled` and ends with `TimerFired` or `TimerCancelled`; a firing carries
its visit's entry sequence and its number, so one for an earlier visit is recognised and never applied.
Scheduled triggers (`notBefore` on a trigger) are timers of kind `trigger` that belong to no visit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.domain.errors import ExecutionError
from engine.domain.expressions import CompileError, Expression

__all__ = ["MAX_HORIZON", "MIN_REPEAT", "PendingTimer", "Timeout", "firing_id", "parse_duration", "parse_time",
           "parse_timeouts"]

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
MAX_TIMEOUTS = 20  # in one state
MIN_REPEAT = timedelta(seconds=1)  # a repeating timer fires at most once a second (a tenant cannot flood the queue)
MAX_HORIZON = timedelta(days=3660)  # about ten years: a due time further away is refused (or faults)

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+(?:[.,]\d+)?)W)?(?:(?P<days>\d+(?:[.,]\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:[.,]\d+)?)H)?(?:(?P<minutes>\d+(?:[.,]\d+)?)M)?(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?)?$"
)
_CALENDAR = re.compile(r"^P(?:\d+Y|\d+M|\d+Y\d+M)")


def parse_duration(text: str) -> timedelta:
    """An ISO 8601 duration of weeks, days, hours, minutes and seconds (`P3D`, `PT1H30M`, `PT0.5S`, `P1W`).

    Years and months are refused: their length depends on the calendar; say the days instead."""
    match = _DURATION.match(text.strip().upper()) if isinstance(text, str) else None
    if match is None:
        if isinstance(text, str) and _CALENDAR.match(text.strip().upper()):
            raise ValueError(f"{text!r}: years and months have no fixed length; give days (P30D) instead")
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as PT30S, PT2H, P3D or P1W")
    parts = {name: float(value.replace(",", ".")) for name, value in match.groupdict().items() if value}
    if not parts:
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as PT30S, PT2H, P3D or P1W")
    return timedelta(**parts)


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp with an offset (`2026-12-01T09:00:00Z`), as an aware datetime."""
    moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone offset (end it with Z or +hh:mm)")
    return moment.astimezone(UTC)


def firing_id(instance_id: str, entry_sequence: int, timer_id: str, n: int) -> str:
    """The trigger id of firing `n` of a state's timer: the same for every delivery, so it applies once."""
    return f"{instance_id}:{entry_sequence}:{timer_id}:{n}"


# ---------------------------------------------------------------------------------------------- the definition

@dataclass(frozen=True)
class Timeout:
    """One entry of a state's `timeouts`, as validated when the definition is built."""

    id: str
    where: str  # the JSON path of the timeout in the definition
    topic: str
    content: Any = None
    duration: timedelta | None = None  # `after` as a literal ISO 8601 duration …
    expression: Expression | None = None  # … or as a CEL expression
    repeat: int | None = None  # None: once; 0: while the visit lasts; N: at most N firings in one visit

    @property
    def after(self) -> str:
        return self.expression.source if self.expression is not None else _format(self.duration)

    def due(self, evaluate: Any, base: datetime, *, previous: datetime | None = None) -> datetime | None:
        """When firing number n fires: `base` (the entry) plus the duration for the first; the previous due time
        plus it for a repeat. A timestamp is used as it is; for a repeat one not after `previous` ends the
        repetition (None). `evaluate(expression, where)` evaluates CEL in the instance's scope."""
        value: Any = self.duration
        where = f"{self.where}.after"
        if self.expression is not None:
            value = evaluate(self.expression, where)
            if isinstance(value, str):
                value = _duration_or_time(value, where)
        start = previous if previous is not None else base
        if isinstance(value, timedelta):
            if previous is not None:
                value = max(value, MIN_REPEAT)
            if value > MAX_HORIZON:
                raise ExecutionError(where, "TimerOutOfRange", f"{_format(value)} is further than the "
                                                               f"{MAX_HORIZON.days} days a timer may wait")
            return start + value
        if isinstance(value, datetime):
            moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
            if previous is not None and moment <= previous:
                return None
            if moment - base > MAX_HORIZON:
                raise ExecutionError(where, "TimerOutOfRange", f"{moment.isoformat()} is further than the "
                                                               f"{MAX_HORIZON.days} days a timer may wait")
            return moment
        raise ExecutionError(where, "TypeMismatch", f"`after` gave {type(value).__name__} {value!r}; it must be a "
                                                    "duration, a timestamp, or a string holding one")


def _duration_or_time(text: str, where: str) -> timedelta | datetime:
    try:
        return parse_duration(text) if text.strip().upper().startswith("P") else parse_time(text)
    except ValueError as e:
        raise ExecutionError(where, "TypeMismatch", f"`after` gave {text!r}, neither an ISO 8601 duration nor an "
                                                    "RFC 3339 timestamp") from e


def _format(duration: timedelta | None) -> str:
    if duration is None:
        return ""
    seconds = duration.total_seconds()
    return f"PT{seconds:g}S"


def parse_timeouts(raw_state: Mapping[str, Any], path: str, problem: Any) -> tuple[Timeout, ...]:
    """The `timeouts` of a state, every problem reported through `problem(path, message)`. Whether a transition of
    the state answers each timeout's topic is checked by the caller, which knows the transitions."""
    raw = raw_state.get("timeouts", [])
    if not isinstance(raw, list):
        problem(f"{path}.timeouts", "must be a list of {\"id\", \"after\", \"trigger\"}")
        return ()
    if len(raw) > MAX_TIMEOUTS:
        problem(f"{path}.timeouts", f"has {len(raw)} timeouts; at most {MAX_TIMEOUTS} are allowed")
        return ()
    timeouts: list[Timeout] = []
    seen: set[str] = set()
    for index, spec in enumerate(raw):
        where = f"{path}.timeouts[{index}]"
        timeout = _timeout(spec, where, problem)
        if timeout is None:
            continue
        if timeout.id in seen:
            problem(f"{where}.id", f"duplicate timeout id {timeout.id!r} in this state")
            continue
        seen.add(timeout.id)
        timeouts.append(timeout)
    return tuple(timeouts)


_TIMEOUT_KEYS = frozenset({"id", "after", "trigger", "repeat", "displayName", "metadata"})


def _timeout(spec: Any, where: str, problem: Any) -> Timeout | None:
    if not isinstance(spec, dict):
        problem(where, "a timeout must be an object: {\"id\", \"after\", \"trigger\": {\"topic\"}}")
        return None
    ok = True
    for key in sorted(set(spec) - _TIMEOUT_KEYS):
        problem(f"{where}.{key}", f"is not a property of a timeout (allowed: {', '.join(sorted(_TIMEOUT_KEYS))})")
        ok = False
    timer_id = spec.get("id")
    if not isinstance(timer_id, str) or not ID_PATTERN.match(timer_id):
        problem(f"{where}.id", "is required: letters, digits, '.', '_', ':' or '-', at most 128 characters")
        ok = False
    duration, expression = _after(spec.get("after"), f"{where}.after", problem)
    if duration is None and expression is None:
        ok = False
    trigger = spec.get("trigger")
    topic = trigger.get("topic") if isinstance(trigger, dict) else None
    if not isinstance(topic, str) or not topic or len(topic) > 200:
        problem(f"{where}.trigger.topic", "is required: the topic of the trigger sent (a non-empty string, at most "
                                          "200 characters)")
        ok = False
    elif isinstance(trigger, dict) and set(trigger) - {"topic", "content"}:
        extra = sorted(set(trigger) - {"topic", "content"})
        problem(f"{where}.trigger", f"has {', '.join(map(repr, extra))}: a timeout's trigger is "
                                    "{\"topic\", \"content\"}")
        ok = False
    repeat = _repeat(spec.get("repeat"), f"{where}.repeat", problem)
    if repeat is False:
        ok = False
    repeats = isinstance(repeat, int) and not isinstance(repeat, bool)
    if duration is not None and repeats and duration < MIN_REPEAT:
        problem(f"{where}.after", f"a repeating timeout waits at least {MIN_REPEAT.total_seconds():g} s between "
                                  "firings")
        ok = False
    if not ok:
        return None
    assert isinstance(trigger, dict) and isinstance(timer_id, str) and isinstance(topic, str)
    return Timeout(timer_id, where, topic, trigger.get("content"), duration, expression,
                   repeat if repeats else None)


def _after(raw: Any, where: str, problem: Any) -> tuple[timedelta | None, Expression | None]:
    if not isinstance(raw, str) or not raw.strip():
        problem(where, "is required: an ISO 8601 duration (P3D, PT2H) or a CEL expression giving a duration or a "
                       "timestamp")
        return None, None
    if re.match(r"^\s*P[\dT]", raw):
        try:
            duration = parse_duration(raw)
        except ValueError as e:
            problem(where, str(e))
            return None, None
        if duration > MAX_HORIZON:
            problem(where, f"is longer than the {MAX_HORIZON.days} days a timer may wait")
            return None, None
        return duration, None
    try:
        return None, Expression(raw)
    except CompileError as e:
        problem(where, f"is neither an ISO 8601 duration nor a CEL expression that compiles: {e}")
        return None, None


def _repeat(raw: Any, where: str, problem: Any) -> int | bool | None:
    """None: no repeat; 0: unbounded; N ≥ 1: at most N firings; False: invalid (reported)."""
    if raw is None or raw is False:
        return None
    if raw is True:
        return 0
    if isinstance(raw, int) and 1 <= raw <= 1_000_000:
        return raw
    problem(where, "must be true (fire every `after` while the instance stays) or the most firings (1 to "
                   "1,000,000)")
    return False


# ---------------------------------------------------------------------------------------------- the instance

@dataclass(frozen=True, slots=True)
class PendingTimer:
    """A timer an instance waits for: a state's timeout (kind `timeout`, of the visit that began at
    `entry_sequence`) or a scheduled trigger (kind `trigger`, `entry_sequence` None)."""

    id: str
    kind: str  # "timeout" | "trigger"
    entry_sequence: int | None
    n: int
    due_at: str
    trigger: Mapping[str, Any]  # {"id", "topic", "content"}: what is sent when it fires
    state: str | None = None  # the state a timeout belongs to
    repeat: int | None = None
    scheduled_at: str = ""
    by: str | None = None  # who scheduled a trigger

    @property
    def key(self) -> tuple[str, int | None]:
        return self.id, self.entry_sequence

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"timerId": self.id, "kind": self.kind, "entrySequence": self.entry_sequence,
                               "n": self.n, "dueAt": self.due_at, "trigger": dict(self.trigger)}
        if self.state is not None:
            doc["state"] = self.state
        if self.repeat is not None:
            doc["repeat"] = self.repeat
        if self.scheduled_at:
            doc["scheduledAt"] = self.scheduled_at
        if self.by is not None:
            doc["by"] = self.by
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, scheduled_at: str = "") -> PendingTimer:
        entry = doc.get("entrySequence")
        return cls(doc["timerId"], doc.get("kind", "timeout"), int(entry) if entry is not None else None,
                   int(doc.get("n", 1)), doc["dueAt"], doc.get("trigger") or {}, doc.get("state"), doc.get("repeat"),
                   doc.get("scheduledAt", scheduled_at), doc.get("by"))

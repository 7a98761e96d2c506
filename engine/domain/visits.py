"""The timers of a visit: what entering a state schedules, what leaving it cancels, and when a repeat fires next.

Each function returns the `data` of the events to record (`TimerScheduled`, `TimerCancelled`); the decide
functions of the aggregate record them in their commit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from engine.domain.definition import State
from engine.domain.events import timestamp
from engine.domain.expressions import Expression
from engine.domain.timers import PendingTimer, Timeout, firing_id, parse_time

Evaluate = Callable[[Expression, str], Any]

TIMEOUTS = frozenset({"timeout"})
ALL = frozenset({"timeout", "trigger"})


def scheduled(timeout: Timeout, *, instance_id: str, state: str, entry_sequence: int, n: int,
              due: datetime) -> dict[str, Any]:
    """The data of a `TimerScheduled` for firing `n` of a state's timeout."""
    return {"timerId": timeout.id, "kind": "timeout", "entrySequence": entry_sequence, "n": n,
            "dueAt": timestamp(due), "state": state, "repeat": timeout.repeat,
            "trigger": {"id": firing_id(instance_id, entry_sequence, timeout.id, n), "topic": timeout.topic,
                        "content": timeout.content}}


def schedule_visit(state: State, *, instance_id: str, entry_sequence: int, base: datetime,
                   evaluate: Evaluate) -> list[dict[str, Any]]:
    """The timers a visit of `state` that begins at event `entry_sequence`, at time `base`, schedules. Raises
    ExecutionError when an `after` expression fails (the caller faults the instance)."""
    planned = []
    for timeout in state.timeouts:
        due = timeout.due(evaluate, base)
        assert due is not None  # only a repeat may end
        planned.append(scheduled(timeout, instance_id=instance_id, state=state.id, entry_sequence=entry_sequence,
                                 n=1, due=due))
    return planned


def next_firing(timer: PendingTimer, timeout: Timeout, *, instance_id: str, now: datetime,
                evaluate: Evaluate) -> dict[str, Any] | None:
    """The `TimerScheduled` of a repeating timer's next firing after firing `timer`, or None when it repeats no
    more (its limit is reached, or a timestamp `after` gives no later time). Firings missed while nothing ran
    are not made up one by one: the next one is the first slot after `now`."""
    if timer.repeat is None or (timer.repeat and timer.n >= timer.repeat) or timer.entry_sequence is None:
        return None
    previous = parse_time(timer.due_at)
    due = timeout.due(evaluate, previous, previous=previous)
    if due is None:
        return None
    interval = due - previous
    if due <= now and interval.total_seconds() > 0:
        due += interval * (math.floor((now - due) / interval) + 1)
    return scheduled(timeout, instance_id=instance_id, state=timer.state or "", entry_sequence=timer.entry_sequence,
                     n=timer.n + 1, due=due)


def cancel_timers(timers: Iterable[PendingTimer], *, reason: str, kinds: frozenset[str] = TIMEOUTS,
                  by: str | None = None) -> list[dict[str, Any]]:
    """The `TimerCancelled` of each pending timer of the given kinds."""
    cancelled = []
    for timer in timers:
        if timer.kind in kinds:
            data: dict[str, Any] = {"timerId": timer.id, "kind": timer.kind, "entrySequence": timer.entry_sequence,
                                    "n": timer.n, "dueAt": timer.due_at, "reason": reason,
                                    "triggerId": timer.trigger.get("id")}
            if by is not None:
                data["by"] = by
            cancelled.append(data)
    return cancelled

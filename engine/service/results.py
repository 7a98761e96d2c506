"""What processing a command did: its `Result` (the outcome and the commit), read back from the commit's events by
`outcome_of` when the command had been processed before."""

from __future__ import annotations

from dataclasses import dataclass

from engine.domain import Commit, EventType, Instance, Outcome

__all__ = ["Result", "outcome_of"]

_OUTCOMES = {
    EventType.CREATED: Outcome.CREATED,
    EventType.TRANSITION_APPLIED: Outcome.APPLIED,
    EventType.TRIGGER_IGNORED: Outcome.IGNORED,
    EventType.TRIGGER_REJECTED: Outcome.REJECTED,
    EventType.FAULTED: Outcome.FAULTED,
    EventType.RECOVERED: Outcome.RECOVERED,
    EventType.TERMINATED: Outcome.TERMINATED,
    EventType.MIGRATED: Outcome.MIGRATED,
    EventType.TIMER_SCHEDULED: Outcome.SCHEDULED,
    EventType.TIMER_CANCELLED: Outcome.CANCELLED,
}


def outcome_of(commit: Commit) -> Outcome:
    """What a commit did, read from its events (a fault anywhere in it wins; a timer's firing is known by what its
    trigger did)."""
    types = [event.type for event in commit.events]
    if EventType.FAULTED in types:
        return Outcome.FAULTED
    if types[0] is EventType.TIMER_FIRED and len(types) > 1:
        return _OUTCOMES.get(types[1], Outcome.APPLIED)
    return _OUTCOMES.get(types[0], Outcome.APPLIED)


@dataclass(frozen=True)
class Result:
    tenant: str
    instance_id: str
    trigger_id: str
    outcome: Outcome
    commit: Commit
    duplicate: bool = False  # the trigger was already recorded: nothing new was written

    @property
    def instance(self) -> Instance:
        return self.commit.state

"""The commit: the events one command produced, with the instance as it is after them.

It stands above both of its parts: an instance is folded from events (engine/domain/fold.py imports
engine/domain/events.py and engine/domain/instance.py), and a commit carries both, so neither of them needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.domain.events import Event
from engine.domain.instance import Instance

__all__ = ["Commit"]


@dataclass(frozen=True, slots=True)
class Commit:
    """The events one command produced, written atomically, with the instance as it is after them.

    `position` is the commit's place in its tenant's feed, assigned by the store (None before).
    """

    instance_id: str
    events: tuple[Event, ...]
    state: Instance
    position: int | None = None
    dispatched: bool = False

    @property
    def first_sequence(self) -> int:
        return self.events[0].sequence

    @property
    def last_sequence(self) -> int:
        return self.events[-1].sequence

    @property
    def trigger_id(self) -> str | None:
        return self.events[0].trigger_id

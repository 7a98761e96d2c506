"""What a Cosmos event store remembers of its own reads and writes, so that its steady state reads nothing:
the head of each instance it last read or wrote, the triggers it recorded, and where its recent commits are (for
marking them dispatched without a query). Bounded LRU maps, safe across threads."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from engine.domain import Commit, Instance
from engine.stores.cosmos.documents import Located

Key = tuple[str, str]  # (tenant, instance id)


class Remembered:
    def __init__(self, cache_size: int) -> None:
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._heads: OrderedDict[Key, Instance] = OrderedDict()
        self._located: OrderedDict[tuple[str, int], Located] = OrderedDict()
        self._recorded: OrderedDict[tuple[str, str, str], Commit] = OrderedDict()  # triggers recorded here

    def forget(self, tenant: str) -> None:
        with self._lock:
            for key in [key for key in self._heads if key[0] == tenant]:
                del self._heads[key]
            for recorded in [recorded for recorded in self._recorded if recorded[0] == tenant]:
                del self._recorded[recorded]

    # ------------------------------------------------------------------------------------------ heads

    def version(self, key: Key) -> int | None:
        instance = self.head(key)
        return None if instance is None else instance.version

    def head(self, key: Key) -> Instance | None:
        with self._lock:
            return self._heads.get(key)

    def remember_head(self, key: Key, instance: Instance) -> None:
        if self._cache_size <= 0:
            return
        with self._lock:
            known = self._heads.get(key)
            if known is not None and known.version > instance.version:
                return
            self._heads[key] = instance
            self._heads.move_to_end(key)
            while len(self._heads) > self._cache_size:
                self._heads.popitem(last=False)

    def drop_head(self, key: Key) -> None:
        with self._lock:
            self._heads.pop(key, None)

    # ------------------------------------------------------------------------------------------ recorded triggers

    def recorded(self, tenant: str, instance_id: str, trigger_id: str) -> Commit | None:
        with self._lock:
            return self._recorded.get((tenant, instance_id, trigger_id))

    def remember_recorded(self, tenant: str, commit: Commit) -> None:
        trigger_id = commit.events[0].trigger_id
        if self._cache_size <= 0 or trigger_id is None:
            return
        with self._lock:
            self._recorded[(tenant, commit.instance_id, trigger_id)] = commit
            while len(self._recorded) > self._cache_size:
                self._recorded.popitem(last=False)

    # ------------------------------------------------------------------------------------------ commits' places

    def remember_location(self, tenant: str, located: Located) -> None:
        with self._lock:
            self._located[(tenant, located.position)] = located
            while len(self._located) > max(self._cache_size, 1024):
                self._located.popitem(last=False)

    def locations(self, tenant: str, positions: Sequence[int]) -> tuple[list[Located], list[int]]:
        """The places of these positions known here, and the positions not known."""
        located: list[Located] = []
        unknown: list[int] = []
        with self._lock:
            for position in positions:
                found = self._located.get((tenant, position))
                if found is None:
                    unknown.append(position)
                else:
                    located.append(found)
        return located, unknown

    def forget_locations(self, tenant: str, positions: Sequence[int]) -> None:
        with self._lock:
            for position in positions:
                self._located.pop((tenant, position), None)

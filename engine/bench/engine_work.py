"""The three workloads `waymark bench engine` compares, and the cold loads. Each runs on files of its own, with the
synchronous level it is given, which it reads back from its own connections (what `Round.synchronous` reports).

- `waymark_round`: the queue worker's whole path on the embedded engine. The commands are put on the SQLite queue
  first (the API's accept is not timed; `waymark bench http` measures it). Timed: `Worker.run_once` until the queue
  is empty — receive a batch (one queue transaction), find each trigger and load its instance, decide, store the
  batch in one group commit (commit + outbox row), delete the batch from the queue (one transaction) — and the
  change feed flagging every commit dispatched (no subscriber): its marker thread gathers the marks, which ride
  along a later group commit (engine/stores/_rides.py) or, when none comes in time, are written in a transaction
  of their own. The run ends when the last commit is marked.
- `raw_round`: the same SQL with no engine, on the same schema, files, pragmas and connection set-up: per batch,
  the receive's SELECT and claims in one queue transaction, the find-and-head SELECT of each trigger, the inserts
  (with their version check) of commits of the same sizes in one transaction, the deletes in one queue
  transaction; and the same marks: as many group commits carrying the marks made until then as carried marks in
  Waymark's round, and as many mark transactions of their own as Waymark's made. Each transaction synced as
  Waymark syncs it (at FULL: the group commit; the claims, deletes and marks unsynced, see
  engine/drivers/sqlite.py unsynced). The physical limit of the design on this disk.
- `pyeventsourcing_round`: pyeventsourcing's `Application` on SQLite, its connections set to the same synchronous
  level, the aggregate cache on, and the same batching: per batch, the 16 aggregates are got, changed, and saved
  with one `app.save(*aggregates)`. It has no queue and no outbox to mark (what it does not do is not timed).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from engine.domain import Trigger
from engine.drivers.sqlite import checked_synchronous, unsynced
from engine.hosting.runtime import sqlite_engine
from engine.queues.sqlite import SqliteCommandQueue
from engine.service.commands import CreateInstance, FireTimer, SendTrigger, to_message
from engine.stores.sqlite import _FIND_AND_HEAD, _INSERT_COMMIT  # the very statements Waymark runs
from engine.stores.sqlite import _MARK_DISPATCHED as _MARK

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "expense-claim.json"
TENANT = "bench"
LEVELS = {0: "off", 1: "normal", 2: "full", 3: "extra"}  # PRAGMA synchronous answers a number
PENDING_TIMER_DELAY = 86400.0  # the pending timers of the timers variant fall due long after the round


@dataclass(frozen=True)
class Workload:
    instances: int
    triggers: int  # per instance
    batch: int
    synchronous: str
    pending_timers: int = 0  # timers' firings waiting on the queue (due in a day) while the round runs

    @property
    def ids(self) -> list[str]:
        return [f"claim-{n:04d}" for n in range(self.instances)]

    def work(self) -> list[tuple[str, Trigger]]:
        """Round-robin over the instances, so a batch holds distinct instances (pyeventsourcing needs that)."""
        return [(instance_id, Trigger("update", f"t-{instance_id}-{n}", {"amount": n + 0.5}))
                for n in range(self.triggers) for instance_id in self.ids]


@dataclass
class Phases:
    """Time spent in each named phase (seconds), summed over a round."""

    spent: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def timing(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - start

    def wrap(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        """`call`, timed under `name` (as cheaply as can be: it wraps calls made once per trigger)."""
        spent, clock = self.spent, time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return call(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + clock() - start
        return timed

    def per_trigger_us(self, triggers: int) -> dict[str, float]:
        return {name: round(seconds / triggers * 1e6, 1) for name, seconds in self.spent.items()}


@dataclass(frozen=True)
class Round:
    tps: float
    synchronous: str  # read back from the connections that did the work
    phases_us: dict[str, float]  # per trigger
    mark_transactions: int = 0  # marks written in a transaction of their own
    mark_rides: int = 0  # group commits that also wrote marks


@dataclass(frozen=True)
class Sizes:
    """The stored size of one trigger's commit (its events and the instance after them, as JSON)."""

    events: int
    state: int


def level_of(connection: sqlite3.Connection) -> str:
    return LEVELS[int(connection.execute("PRAGMA synchronous").fetchone()[0])]


def _close(*parts: object) -> None:
    for part in parts:
        close = getattr(part, "close", None)
        if callable(close):
            close()


def _prepare_engine(data_dir: Path, workload: Workload) -> None:
    """The workflow, the instances (their creation published already), and every trigger's command on the queue;
    closed again. Not timed (and written at synchronous=normal: only the timed part runs at the level measured)."""
    engine = sqlite_engine(data_dir, synchronous="normal")
    try:
        engine.catalog.put(TENANT, json.loads(SAMPLE.read_text()))
        created = [engine.processor.create(CreateInstance(
            TENANT, instance_id, "expense-claim", f"create-{instance_id}",
            context={"claimant": "Jo Bloggs", "costCentre": "CC-1234",
                     "description": "Train to the Leeds office and back"})).commit.position
            for instance_id in workload.ids]
        engine.events.mark_dispatched(TENANT, [position for position in created if position is not None])
        for n in range(workload.pending_timers):  # sent first: ahead of every trigger on the queue
            firing = FireTimer(TENANT, f"sleeper-{n:05d}", "escalate", 1, 1, f"sleeper-{n:05d}:1:escalate:1",
                               "2099-01-01T00:00:00.000000Z")
            engine.queue.send(to_message(firing), delay=PENDING_TIMER_DELAY)
        for instance_id, trigger in workload.work():
            engine.queue.send(to_message(SendTrigger(TENANT, instance_id, trigger)))
    finally:
        _close(engine.events, engine.definitions, engine.queue)


def measure_sizes(data_dir: Path, workload: Workload) -> Sizes:
    """What one `update` trigger stores, read from a Waymark file that ran one."""
    engine = sqlite_engine(data_dir, synchronous="normal")
    try:
        engine.catalog.put(TENANT, json.loads(SAMPLE.read_text()))
        instance_id, trigger = workload.work()[0]
        engine.processor.create(CreateInstance(TENANT, instance_id, "expense-claim", "create",
                                               context={"claimant": "Jo Bloggs", "costCentre": "CC-1234",
                                                        "description": "Train to the Leeds office and back"}))
        engine.processor.trigger(TENANT, instance_id, trigger)
    finally:
        _close(engine.events, engine.definitions, engine.queue)
    with contextlib.closing(sqlite3.connect(data_dir / "tenants" / f"{TENANT}.db")) as db:
        events, state = db.execute("SELECT length(events), length(state) FROM commits WHERE trigger_id = ?",
                                   (trigger.id,)).fetchone()
    return Sizes(int(events), int(state))


def waymark_round(data_dir: Path, workload: Workload) -> Round:
    from engine.feed import ChangeFeed, SqliteSubscriptionStore
    from engine.queues.base import CommandQueue
    from engine.service.engine import Engine
    from engine.service.worker import Worker
    from engine.stores.base import EventStore
    from engine.stores.sqlite import SqliteDefinitionStore, SqliteEventStore

    _prepare_engine(data_dir, workload)
    synchronous = checked_synchronous(workload.synchronous)
    phases = Phases()
    store = SqliteEventStore(data_dir, synchronous=synchronous)
    queue = SqliteCommandQueue(data_dir / "queue.db", synchronous=synchronous)
    definitions = SqliteDefinitionStore(data_dir, synchronous=synchronous)
    timed_store = cast(EventStore, _Timed(store, phases, find_trigger="find + load", load="find + load",
                                          append_many="group commit (1 transaction)",
                                          mark_dispatched="mark dispatched (marker thread)"))
    timed_queue = cast(CommandQueue, _Timed(queue, phases, receive="receive",
                                            complete_many="complete (1 transaction)"))
    engine = Engine(events=timed_store, definitions=definitions, queue=timed_queue)
    subscriptions = SqliteSubscriptionStore(data_dir, synchronous=synchronous)  # no subscription in it
    feed = ChangeFeed(timed_store, subscriptions, definitions=engine.catalog)
    engine.processor.on_commit = feed.on_commit
    worker = Worker(timed_queue, engine.processor, batch_size=workload.batch)
    try:
        start = time.perf_counter()
        while worker.run_once():
            pass
        working = time.perf_counter() - start
        if not feed.dispatcher.drain(60):
            raise RuntimeError("the change feed did not mark every commit dispatched within 60 s")
        elapsed = time.perf_counter() - start
        if queue.depth() != workload.pending_timers or store.undispatched(TENANT, limit=1):
            raise RuntimeError("the round left commands queued or commits undispatched")
        level = level_of(store._db.connection(TENANT))  # the pragma in force on the worker's connections
        if level_of(queue._db()) != level:
            raise RuntimeError("the queue and the store ran at different synchronous levels")
    finally:
        feed.close()
        _close(store, definitions, queue, subscriptions)
    triggers = workload.instances * workload.triggers
    on_worker = sum(seconds for name, seconds in phases.spent.items() if "marker" not in name)
    phases.spent["decide, and the rest of the worker"] = working - on_worker
    phases.spent["the marker's last batch after the worker"] = elapsed - working
    return Round(triggers / elapsed, level, phases.per_trigger_us(triggers), store.rides.alone, store.rides.ridden)


class _Timed:
    """An adapter whose named calls are timed, each under the phase given (everything else passes through)."""

    def __init__(self, adapter: Any, phases: Phases, **timed: str) -> None:
        self._adapter = adapter
        for method, phase in timed.items():
            setattr(self, method, phases.wrap(phase, getattr(adapter, method)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)


def raw_round(data_dir: Path, workload: Workload, sizes: Sizes, marks: Round) -> Round:
    """`marks`: Waymark's round, whose mark transactions and rides this one makes as many of."""
    from engine.drivers.sqlite import TenantDatabases

    synchronous = checked_synchronous(workload.synchronous)
    _prepare_engine(data_dir, workload)  # the same files: schema, instances and the queued commands
    files = TenantDatabases(data_dir, store="raw", background_checkpoints=True, synchronous=synchronous)
    queue = SqliteCommandQueue(data_dir / "queue.db", synchronous=synchronous)
    store, db = files.connection(TENANT), queue._db()  # the same connection set-up as Waymark's
    versions = {instance_id: 1 for instance_id in workload.ids}
    events_json, state_json = "x" * sizes.events, "x" * sizes.state
    batches = -(-workload.instances * workload.triggers // workload.batch)
    phases, unmarked, alone, rides = Phases(), list[int](), 0, 0
    try:
        start = time.perf_counter()
        for number in range(batches):
            with phases.timing("receive"), unsynced(db, synchronous):
                claimed = _raw_receive(db, queue, workload.batch)
            parsed = [(json.loads(body), message_id, receipt) for message_id, body, receipt in claimed]
            with phases.timing("find + load"):
                for body, _, _ in parsed:  # with the version held, as Waymark's cache holds it: no snapshot read
                    store.execute(_FIND_AND_HEAD, (body["instanceId"], versions[body["instanceId"]],
                                                   body["trigger"]["id"])).fetchone()
            with phases.timing("group commit (1 transaction)"):
                riding = unmarked if _spread(marks.mark_rides, batches, number) else []
                stored = _raw_group_commit(store, parsed, versions, events_json, state_json, riding)
                files.committed(TENANT)
                unmarked, rides = (stored, rides + 1) if riding else (unmarked + stored, rides)
            with phases.timing("complete (1 transaction)"), unsynced(db, synchronous):
                _raw_in_one(db, queue._sql_complete, [(message_id, receipt) for _, message_id, receipt in parsed])
            if unmarked and (_spread(marks.mark_transactions, batches, number) or number == batches - 1):
                with phases.timing("mark dispatched"), unsynced(store, synchronous):
                    _raw_in_one(store, _MARK, [(position,) for position in unmarked])
                unmarked, alone = [], alone + 1
        elapsed = time.perf_counter() - start
        level = level_of(store)
        if level_of(db) != level or queue.depth():
            raise RuntimeError("the raw round did not do the same work at one synchronous level")
    finally:
        queue.close()
        files.close()
    triggers = workload.instances * workload.triggers
    return Round(triggers / elapsed, level, phases.per_trigger_us(triggers), alone, rides)


def _spread(count: int, batches: int, number: int) -> bool:
    """Whether batch `number` is one of `count` spread evenly over `batches` (the last batch is one of them)."""
    return (number + 1) * count // batches > number * count // batches


def _raw_receive(db: sqlite3.Connection, queue: SqliteCommandQueue, batch: int) -> list[tuple[str, str, str]]:
    """The receive's statements (the queue's own), in one transaction."""
    now, token = time.time(), uuid.uuid4().hex
    db.execute("BEGIN IMMEDIATE")
    db.execute(queue._sql_due, (now,)).fetchall()  # the probe for due delayed messages (timers)
    rows = db.execute(queue._sql_candidates, (now, batch)).fetchall()
    claimed, claims = [], []
    for seq, message_id, body, count in rows:
        receipt = f"{token}-{seq}"
        claims.append((now + 30, count + 1, receipt, seq))
        claimed.append((message_id, body, receipt))
    db.executemany(queue._sql_claim, claims)
    db.execute("COMMIT")
    return claimed


def _raw_group_commit(store: sqlite3.Connection, parsed: Sequence[tuple[dict[str, Any], str, str]],
                      versions: dict[str, int], events_json: str, state_json: str, marks: list[int]) -> list[int]:
    positions = []
    store.execute("BEGIN IMMEDIATE")
    for body, _, _ in parsed:
        instance_id, version = body["instanceId"], versions[body["instanceId"]]
        inserted = store.execute(_INSERT_COMMIT, (instance_id, version + 1, version + 1, body["trigger"]["id"],
                                                  "2026-01-01T00:00:00.000000Z", events_json, state_json, version))
        versions[instance_id] = version + 1
        positions.append(int(inserted.lastrowid or 0))
    if marks:
        store.executemany(_MARK, [(position,) for position in marks])
    store.execute("COMMIT")
    return positions


def _raw_in_one(db: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """One statement a row, in one transaction, by one call (as Waymark makes its deletes and marks)."""
    db.execute("BEGIN IMMEDIATE")
    db.executemany(sql, rows)
    db.execute("COMMIT")


@functools.cache
def _pyeventsourcing_application() -> type[Any] | None:
    """pyeventsourcing's aggregate and application, defined once per process (it registers each class by name)."""
    try:
        from eventsourcing.application import Application
        from eventsourcing.domain import Aggregate, event
    except ImportError:
        return None

    class Claim(Aggregate):
        @event("Created")
        def __init__(self, claimant: str) -> None:
            self.claimant = claimant
            self.amount: float | None = None

        @event("Updated")
        def update(self, amount: float) -> None:
            self.amount = amount

    class Claims(Application[Any]):
        def create(self, claimant: str) -> Any:
            claim = Claim(claimant)
            self.save(claim)
            return claim.id

        def update_many(self, changes: Sequence[tuple[Any, float]]) -> None:
            claims = []
            for claim_id, amount in changes:
                claim: Claim = self.repository.get(claim_id)
                claim.update(amount)
                claims.append(claim)
            self.save(*claims)

    return Claims


def pyeventsourcing_round(data_dir: Path, workload: Workload) -> Round | None:
    Claims = _pyeventsourcing_application()
    if Claims is None:
        return None
    application = Claims(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                              "SQLITE_DBNAME": str(data_dir / "pyeventsourcing.db"),
                              "AGGREGATE_CACHE_MAXSIZE": str(workload.instances * 2)})
    pool = application.recorder.datastore.pool
    _set_synchronous(pool, workload.synchronous)
    ids = [application.create("Jo Bloggs") for _ in range(workload.instances)]
    work = [(claim_id, n + 0.5) for n in range(workload.triggers) for claim_id in ids]
    phases = Phases()
    try:
        start = time.perf_counter()
        for begin in range(0, len(work), workload.batch):
            application.update_many(work[begin:begin + workload.batch])
        elapsed = time.perf_counter() - start
        connection = pool.get_connection()
        try:
            level = level_of(connection._sqlite_conn)
        finally:
            pool.put_connection(connection)
    finally:
        application.close()
    return Round(len(work) / elapsed, level, phases.per_trigger_us(len(work)))


def _set_synchronous(pool: Any, synchronous: str) -> None:
    """Every connection pyeventsourcing's pool hands out gets the level (it sets only journal_mode=WAL itself)."""
    pragma = f"PRAGMA synchronous = {checked_synchronous(synchronous).upper()}"
    handed_out = pool.get_connection

    def get_connection(*args: Any, **kwargs: Any) -> Any:
        connection = handed_out(*args, **kwargs)
        if not getattr(connection, "waymark_synchronous", False):
            connection._sqlite_conn.execute(pragma)
            connection.waymark_synchronous = True
        return connection

    pool.get_connection = get_connection


def cold_load_ms(data_dir: Path, events: int, synchronous: str, repeats: int = 200) -> float:
    """The load of an instance with `events` events by a store that caches no instance (the snapshot is read and
    decoded every time; SQLite's own page cache stays warm)."""
    from engine.stores.sqlite import SqliteEventStore

    engine = sqlite_engine(data_dir, synchronous="normal")
    instance_id = f"history-{events}"
    try:
        engine.catalog.put(TENANT, json.loads(SAMPLE.read_text()))
        engine.processor.create(CreateInstance(TENANT, instance_id, "expense-claim", "create",
                                               context={"claimant": "Jo Bloggs"}))
        items = [(instance_id, Trigger("update", f"h-{n}", {"amount": n})) for n in range(events - 1)]
        for begin in range(0, len(items), 500):
            for result in engine.processor.trigger_many(TENANT, items[begin:begin + 500]):
                if isinstance(result, Exception):
                    raise result
    finally:
        _close(engine.events, engine.definitions, engine.queue)
    store = SqliteEventStore(data_dir, cache_size=0, synchronous=checked_synchronous(synchronous))
    try:
        if store.load(TENANT, instance_id).version != events:
            raise RuntimeError(f"the instance does not have {events} events")
        start = time.perf_counter()
        for _ in range(repeats):
            store.load(TENANT, instance_id)
        return (time.perf_counter() - start) / repeats * 1000
    finally:
        store.close()

"""Processing a command: load the instance, decide with the domain, append one commit.

This is the one place the engine changes state; the local worker and the Azure queue function both
call `CommandProcessor.handle`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engine.domain import (
    ActionAttempt,
    Commit,
    ConcurrencyConflict,
    Decision,
    DuplicateTrigger,
    Event,
    EventType,
    Instance,
    InstanceAlreadyExists,
    InstanceNotFound,
    MigrationRefused,
    Outcome,
    RecoveryMode,
    RecoveryRefused,
    RetryAction,
    SchedulingRefused,
    Services,
    StoreUnavailable,
    TimerNotFound,
    Trigger,
    WorkflowNotFound,
    decide_cancel,
    decide_create,
    decide_migrate,
    decide_recover,
    decide_schedule,
    decide_terminate,
    decide_trigger,
    fold,
    parse_time,
    scheduling_id,
)
from engine.domain.errors import InvalidCommand
from engine.service.commands import Broadcast, Command, CreateInstance, FireTimer, SendTrigger, to_message
from engine.service.definitions import DefinitionCatalog
from engine.service.firing import fire
from engine.service.results import Result, outcome_of
from engine.service.retrying import RetryLater, retried
from engine.stores.base import EventStore, PendingCommit, append_many, load_follows

if TYPE_CHECKING:
    from engine.service.timers import TimerScheduler

log = logging.getLogger("waymark.processor")

# How often a command is re-decided after losing a race for the same instance before it is handed
# back to the queue (which retries it later). Races are short: each retry re-reads the instance.
MAX_CONFLICT_RETRIES = 50


CommitListener = Callable[[str, Commit], None]


class CommandProcessor:
    def __init__(self, events: EventStore, definitions: DefinitionCatalog, *, services: Services | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 on_commit: CommitListener | None = None, scheduler: TimerScheduler | None = None) -> None:
        self.events = events
        self.definitions = definitions
        self.services = services or Services()
        self.clock = clock
        self.on_commit = on_commit
        self.scheduler = scheduler  # puts timers' firings on the queue (engine/service/timers.py)

    def services_for(self, attempts: Mapping[str, ActionAttempt] | None = None) -> Services:
        """The services of a queued command's decision: an `http` step that fails in a way a retry may cure asks
        for one (`RetryAction`, turned into `RetryLater` here: engine/service/retrying.py), knowing the attempts
        earlier deliveries made. A recovery made through the API uses `self.services`: one attempt per step."""
        retries = replace(self.services.retries, requeue=True, attempts=attempts or {}, now=self.clock().timestamp())
        return replace(self.services, retries=retries)

    def handle(self, command: Command) -> list[Result]:
        match command:
            case CreateInstance():
                return [self.create(command)]
            case SendTrigger():
                return [self.trigger(command.tenant, command.instance_id, command.trigger,
                                     attempts=command.action_retries)]
            case Broadcast():
                return self.broadcast(command.tenant, command.trigger)
            case FireTimer():
                return fire(self, command)

    def create(self, command: CreateInstance) -> Result:
        tenant, instance_id = command.tenant, command.instance_id
        existing = self.events.find_trigger(tenant, instance_id, command.trigger_id)
        if existing is not None:
            return Result(tenant, instance_id, command.trigger_id, outcome_of(existing), existing, duplicate=True)
        workflow = self.definitions.get(tenant, command.workflow_id, command.workflow_version)
        try:
            decision = decide_create(workflow, instance_id, context=command.context, interests=command.interests,
                                     trigger_id=command.trigger_id, now=self.clock(),
                                     services=self.services_for(command.action_retries))
        except RetryAction as retry:
            raise retried(command, retry) from None
        self.schedule_firings(tenant, decision.events)
        try:
            commit = self.events.append(tenant, instance_id, 0, decision.events, state=decision.instance)
        except DuplicateTrigger:
            return self._recorded(tenant, instance_id, command.trigger_id)
        except ConcurrencyConflict as e:
            # The stream has a first commit: another creation got there first. Checked, not assumed: a command
            # is dropped for this, so it must be true.
            try:
                self.events.load(tenant, instance_id)
            except InstanceNotFound:
                raise e from None
            raise InstanceAlreadyExists(tenant, instance_id) from e
        return self._committed(tenant, instance_id, command.trigger_id, decision.outcome, commit)

    def trigger(self, tenant: str, instance_id: str, trigger: Trigger, *,
                attempts: Mapping[str, ActionAttempt] | None = None) -> Result:
        """Decide and store one trigger; raises RetryLater when an `http` step asks to be retried."""
        services = self.services_for(attempts)

        def decide(instance: Instance) -> Decision:
            workflow = self.definitions.get(tenant, instance.workflow_id, instance.workflow_version)
            return decide_trigger(instance, workflow, trigger, now=self.clock(), services=services)

        try:
            return self.decide_and_append(tenant, instance_id, trigger.id, decide)
        except RetryAction as retry:
            raise retried(SendTrigger(tenant, instance_id, trigger, action_retries=attempts or {}), retry) from None

    def trigger_many(self, tenant: str, items: Sequence[tuple[str, Trigger]]) -> list[Result | Exception]:
        """Triggers of one tenant decided one after the other and stored in one group commit (the worker hands
        over the triggers of a received batch). The same as `trigger` for each, in order: a trigger decided on a
        state another writer changed meanwhile is decided again on its own, so is one whose instance had an
        earlier trigger of the batch refused. Answers each trigger's result, or the error that stops it."""
        results: list[Result | Exception | None] = [None] * len(items)
        services = self.services_for()
        pending: list[PendingCommit] = []
        owners: list[tuple[int, Outcome]] = []
        latest: dict[str, Instance] = {}  # each instance as the batch's decisions leave it
        for index, (instance_id, trigger) in enumerate(items):
            try:
                with load_follows():
                    existing = self.events.find_trigger(tenant, instance_id, trigger.id)
                    if existing is not None:
                        results[index] = Result(tenant, instance_id, trigger.id, outcome_of(existing), existing,
                                                duplicate=True)
                        continue
                    instance = latest.get(instance_id) or self.events.load(tenant, instance_id)
                workflow = self.definitions.get(tenant, instance.workflow_id, instance.workflow_version)
                decision = decide_trigger(instance, workflow, trigger, now=self.clock(), services=services)
            except RetryAction as retry:
                results[index] = retried(SendTrigger(tenant, instance_id, trigger), retry)
                continue
            except Exception as e:
                results[index] = e
                continue
            latest[instance_id] = decision.instance
            pending.append(PendingCommit(instance_id, instance.version, decision.events, decision.instance))
            owners.append((index, decision.outcome))
        try:
            self.schedule_firings(tenant, [event for commit in pending for event in commit.events])
        except Exception as e:  # nothing is stored: each trigger of the batch fails, and is retried, on its own
            return [result if result is not None else e for result in results]
        stored = append_many(self.events, tenant, pending) if pending else []
        published: list[Commit] = []
        refused: dict[str, list[int]] = {}  # by instance: the triggers whose commit was not stored, in order
        for (index, outcome), commit in zip(owners, stored, strict=True):
            instance_id, trigger = items[index]
            if isinstance(commit, Commit) and instance_id not in refused:
                results[index] = self._result(tenant, instance_id, trigger.id, outcome, commit)
                published.append(commit)
            else:  # later commits of it in the batch were decided on a state not stored
                refused.setdefault(instance_id, []).append(index)
        self._publish(tenant, published)  # the group commit's commits handed over at once
        for index in sorted(i for indexes in refused.values() for i in indexes):
            instance_id, trigger = items[index]
            try:
                results[index] = self.trigger(tenant, instance_id, trigger)
            except Exception as e:
                results[index] = e
        return [result if result is not None else RuntimeError("not processed") for result in results]

    def broadcast(self, tenant: str, trigger: Trigger) -> list[Result]:
        """The trigger goes to every instance interested in one of its subjects. Each instance records the
        trigger id once, so a broadcast redelivered after a crash half way through applies nowhere twice."""
        results = []
        retries: list[RetryLater] = []
        for instance_id in self.events.interested(tenant, trigger.subjects):
            try:
                results.append(self.trigger(tenant, instance_id, trigger))
            except InstanceNotFound:
                continue
            except RetryLater as retry:  # that instance's step goes back as a trigger of its own
                retries.append(retry)
        if retries:
            raise RetryLater([resend for retry in retries for resend in retry.resends],
                             "; ".join(retry.reason for retry in retries))
        return results

    def recover(self, tenant: str, instance_id: str, *, mode: RecoveryMode, by: str, reason: str,
                recovery_id: str, state: str | None = None, to_sequence: int | None = None,
                context_patch: dict[str, Any] | None = None, force: bool = False) -> Result:
        """Append `Recovered` (and, for a retry, the retried trigger's outcome) to a faulted instance.
        `recovery_id` is the command's idempotency key: the same recovery sent twice applies once."""
        def decide(instance: Instance) -> Decision:
            workflow = self.definitions.get(tenant, instance.workflow_id, instance.workflow_version)
            as_of = None
            if to_sequence is not None:
                if not 1 <= to_sequence <= instance.version:
                    raise InvalidCommand("toSequence", f"must be from 1 to {instance.version}, the instance's version")
                as_of = fold(None, self.events.read(tenant, instance_id, limit=to_sequence))
            retry_trigger, retry_step = (self._faulting_trigger(tenant, instance) if mode is RecoveryMode.RETRY
                                         else (None, None))
            return decide_recover(instance, workflow, mode=mode, by=by, reason=reason, recovery_id=recovery_id,
                                  now=self.clock(), services=self.services, state=state, as_of=as_of,
                                  context_patch=context_patch, force=force, retry_trigger=retry_trigger,
                                  retry_step=retry_step)

        return self.decide_and_append(tenant, instance_id, recovery_id, decide)

    def terminate(self, tenant: str, instance_id: str, *, by: str, reason: str, command_id: str) -> Result:
        def decide(instance: Instance) -> Decision:
            return decide_terminate(instance, by=by, reason=reason, command_id=command_id, now=self.clock())

        return self.decide_and_append(tenant, instance_id, command_id, decide)

    # ------------------------------------------------------------------------------------ time and change

    def schedule_trigger(self, tenant: str, instance_id: str, trigger: Trigger, *, due: datetime,
                         by: str | None = None) -> Result:
        """Record that `trigger` is to be sent to the instance at `due` (`TimerScheduled`, kind `trigger`), its
        firing queued first. The same trigger id scheduled again answers with the first result."""
        def decide(instance: Instance) -> Decision:
            if self.events.find_trigger(tenant, instance_id, trigger.id) is not None:
                raise SchedulingRefused(tenant, instance_id, f"trigger {trigger.id!r} is recorded already")
            try:
                return decide_schedule(instance, trigger, due=due, now=self.clock(), by=by)
            except SchedulingRefused as e:
                raise SchedulingRefused(tenant, instance_id, e.reason) from e

        return self.decide_and_append(tenant, instance_id, scheduling_id(trigger.id), decide)

    def cancel_scheduled(self, tenant: str, instance_id: str, timer_id: str, *, by: str, reason: str,
                         command_id: str) -> Result:
        """Cancel a pending scheduled trigger (`TimerCancelled`); its firing, when it comes, is recorded as
        ignored."""
        def decide(instance: Instance) -> Decision:
            try:
                return decide_cancel(instance, timer_id, by=by, reason=reason, command_id=command_id,
                                     now=self.clock())
            except TimerNotFound as e:
                raise TimerNotFound(tenant, instance_id, timer_id) from e
            except SchedulingRefused as e:
                raise SchedulingRefused(tenant, instance_id, e.reason) from e

        return self.decide_and_append(tenant, instance_id, command_id, decide)

    def plan_migration(self, tenant: str, instance: Instance, to_version: int, *, state_map: Mapping[str, str],
                       context_patch: Mapping[str, Any] | None, by: str, reason: str, command_id: str) -> Decision:
        """What migrating `instance` to `to_version` would append; raises MigrationRefused (or WorkflowNotFound)."""
        target = self.definitions.get(tenant, instance.workflow_id, to_version)
        try:
            source = self.definitions.get(tenant, instance.workflow_id, instance.workflow_version)
        except WorkflowNotFound:
            source = None
        try:
            return decide_migrate(instance, source, target, state_map=state_map, context_patch=context_patch,
                                  by=by, reason=reason, command_id=command_id, now=self.clock(),
                                  services=self.services)
        except MigrationRefused as e:
            raise MigrationRefused(tenant, instance.id, e.problems) from e

    def migrate(self, tenant: str, instance_id: str, to_version: int, *, state_map: Mapping[str, str],
                context_patch: Mapping[str, Any] | None, by: str, reason: str, command_id: str) -> Result:
        """Move the instance to another version of its workflow (`Migrated`); its later triggers run on it."""
        def decide(instance: Instance) -> Decision:
            return self.plan_migration(tenant, instance, to_version, state_map=state_map,
                                       context_patch=context_patch, by=by, reason=reason, command_id=command_id)

        return self.decide_and_append(tenant, instance_id, command_id, decide)

    def decide_and_append(self, tenant: str, instance_id: str, command_id: str,
                           decide: Callable[[Instance], Decision]) -> Result:
        """Load, decide, append — re-deciding on the new version after a lost race. A command id already
        recorded on the instance answers with its first result and writes nothing."""
        with load_follows():
            existing = self.events.find_trigger(tenant, instance_id, command_id)
            if existing is not None:
                return Result(tenant, instance_id, command_id, outcome_of(existing), existing, duplicate=True)
            first = self.events.load(tenant, instance_id)
        for attempt in range(MAX_CONFLICT_RETRIES):
            instance = first if attempt == 0 else self.events.load(tenant, instance_id)
            try:
                decision = decide(instance)
            except RecoveryRefused as e:
                raise RecoveryRefused(tenant, instance_id, e.reason) from e
            self.schedule_firings(tenant, decision.events)
            try:
                commit = self.events.append(tenant, instance_id, instance.version, decision.events,
                                            state=decision.instance)
            except ConcurrencyConflict:
                continue
            except DuplicateTrigger:
                return self._recorded(tenant, instance_id, command_id)
            return self._committed(tenant, instance_id, command_id, decision.outcome, commit)
        raise ConcurrencyConflict(tenant, instance_id, -1, None,
                                  detail=f"lost the race for the instance {MAX_CONFLICT_RETRIES} times in a row")

    def schedule_firings(self, tenant: str, events: Sequence[Event]) -> None:
        """Put on the queue the firing of every timer these events schedule, before they are stored (see
        engine/service/timers.py). Raises when the queue cannot take them: then nothing is stored either."""
        for event in events:
            if event.type is not EventType.TIMER_SCHEDULED:
                continue
            if self.scheduler is None:
                raise StoreUnavailable("timer scheduler", "this engine has no timer scheduler: it cannot keep timers")
            data = event.data
            firing = FireTimer(tenant, event.instance_id, data["timerId"], data.get("entrySequence"), int(data["n"]),
                               data["trigger"]["id"], data["dueAt"])
            self.scheduler.schedule(tenant, to_message(firing), due=parse_time(firing.due_at), key=firing.trigger_id,
                                    instance_id=firing.instance_id)

    def _faulting_trigger(self, tenant: str, instance: Instance) -> tuple[Trigger | None, int | None]:
        """The trigger recorded on the instance's Faulted event (None for a fault at creation), and the step it
        faulted in (the Faulted event's own sequence when it does not say: recorded before steps were)."""
        if instance.fault is None:
            return None, None
        events = self.events.read(tenant, instance.id, after=instance.fault.sequence - 1, limit=1)
        data = events[0].data if events else {}
        recorded = data.get("trigger")
        step = data.get("step")
        step = step if isinstance(step, int) and not isinstance(step, bool) else instance.fault.sequence
        if not recorded:
            return None, step
        return Trigger(topic=recorded["topic"], id=recorded["id"], content=recorded.get("content")), step

    def _recorded(self, tenant: str, instance_id: str, trigger_id: str) -> Result:
        commit = self.events.find_trigger(tenant, instance_id, trigger_id)
        assert commit is not None, "DuplicateTrigger means the trigger is recorded"
        return Result(tenant, instance_id, trigger_id, outcome_of(commit), commit, duplicate=True)

    def _committed(self, tenant: str, instance_id: str, trigger_id: str, outcome: Outcome, commit: Commit) -> Result:
        result = self._result(tenant, instance_id, trigger_id, outcome, commit)
        self._publish(tenant, [commit])
        return result

    @staticmethod
    def _result(tenant: str, instance_id: str, trigger_id: str, outcome: Outcome, commit: Commit) -> Result:
        if log.isEnabledFor(logging.INFO):  # (its fields cost a trigger more than the check)
            log.info("%s", outcome, extra={"tenant": tenant, "instanceId": instance_id, "triggerId": trigger_id,
                                            "sequence": commit.last_sequence})
        return Result(tenant, instance_id, trigger_id, outcome, commit)

    def _publish(self, tenant: str, commits: Sequence[Commit]) -> None:
        """Hand stored commits to `on_commit`: all at once to a listener that takes a group commit's commits
        together (its `many`, as the change feed's dispatcher has), else one by one."""
        listener = self.on_commit
        if listener is None or not commits:
            return
        many = getattr(listener, "many", None)
        for batch in ([commits] if many is not None else [[commit] for commit in commits]):
            try:
                if many is not None:
                    many(tenant, batch)
                else:
                    listener(tenant, batch[0])
            except Exception:  # publishing never faults an instance; the sweeper will retry the commits
                log.exception("publishing %d commit(s) failed; the outbox sweeper will retry them", len(batch),
                              extra={"tenant": tenant, "instanceId": batch[0].instance_id,
                                     "sequence": batch[0].last_sequence})

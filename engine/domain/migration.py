"""Moving an instance to another version of its workflow: one `Migrated` event, checked against the target version.

The instance keeps its history, its visit and its id; from the `Migrated` event on, it is the target version that
decides its triggers. Its state is mapped (`stateMap`, else kept by id) and must exist in the target version;
`contextPatch` is merged into its context (a null removes a key). The pending timeouts of the visit go on where
the target state has a timeout of the same id (with the target's trigger and repeat, the same due time), and are
cancelled where it has none; timeouts the target version adds begin with the next visit.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.domain.decision import Decision, Outcome, Recorder
from engine.domain.definition import WorkflowDefinition
from engine.domain.errors import ExecutionError, MigrationRefused, Problem
from engine.domain.events import EventType, timestamp
from engine.domain.extensions import Services
from engine.domain.fold import fold
from engine.domain.instance import Instance, Status
from engine.domain.steps import interests_in_state
from engine.domain.timers import parse_time
from engine.domain.visits import ALL, cancel_timers, scheduled

__all__ = ["decide_migrate", "migration_problems"]


def migration_problems(instance: Instance, source: WorkflowDefinition | None, target: WorkflowDefinition,
                       state_map: Mapping[str, str]) -> list[Problem]:
    """Every reason the instance cannot move to `target` (none: it can)."""
    problems: list[Problem] = []
    if instance.status in (Status.COMPLETE, Status.TERMINATED):
        problems.append(Problem("$", f"the instance is {instance.status}: it takes no more triggers, so it stays "
                                     f"on the version it finished on"))
    if target.id != instance.workflow_id:
        problems.append(Problem("$.toVersion", f"the target is workflow {target.id!r}, not the instance's "
                                               f"{instance.workflow_id!r}"))
    if target.version == instance.workflow_version:
        problems.append(Problem("$.toVersion", f"the instance is on version {target.version} already"))
    for old, new in state_map.items():
        if source is not None and old not in source.states:
            problems.append(Problem(f"$.stateMap.{old}", f"version {source.version} has no state {old!r}"))
        if new not in target.states:
            problems.append(Problem(f"$.stateMap.{old}", f"version {target.version} has no state {new!r}"))
    mapped = state_map.get(instance.state, instance.state)
    if mapped not in target.states and instance.state not in state_map:
        problems.append(Problem("$.stateMap", f"the instance is in state {instance.state!r}, which version "
                                              f"{target.version} does not have: map it to one of "
                                              f"{', '.join(sorted(target.states))}"))
    return problems


def decide_migrate(instance: Instance, source: WorkflowDefinition | None, target: WorkflowDefinition, *,
                   state_map: Mapping[str, str], context_patch: Mapping[str, Any] | None, by: str, reason: str,
                   command_id: str, now: datetime, services: Services | None = None) -> Decision:
    """Move the instance to `target`, or raise MigrationRefused listing every problem. `source` is the instance's
    current version (None when it can no longer be read: the state map is then not checked against it). The
    instance's interests follow the target state's (an `interests` expression that fails refuses the move)."""
    problems = migration_problems(instance, source, target, state_map)
    if problems:
        raise MigrationRefused("", instance.id, problems)
    to_state = state_map.get(instance.state, instance.state)
    changes: dict[str, Any] = {}
    removed: list[str] = []
    for key, value in (context_patch or {}).items():
        if value is None:
            if key in instance.context:
                removed.append(key)
        else:
            changes[key] = value
    recorder = Recorder(instance.id, instance.version, command_id, timestamp(now))
    context = {key: value for key, value in {**instance.context, **changes}.items() if key not in removed}
    try:
        listening = interests_in_state(instance, target, to_state, context, recorder.next, services or Services())
    except ExecutionError as error:
        raise MigrationRefused("", instance.id, [Problem(error.where, f"the target state's interests cannot be "
                                                                      f"computed: {error.message}")]) from error
    migrated: dict[str, Any] = {
        "fromVersion": instance.workflow_version, "toVersion": target.version, "from": instance.state,
        "to": to_state, "stateMap": dict(state_map), "contextChanges": {"set": changes, "removed": sorted(removed)},
        "by": by, "reason": reason, "status": str(instance.status),
    }
    if listening != instance.interests:
        migrated["interests"] = list(listening)
    recorder.record(EventType.MIGRATED, migrated)
    state = target.state(to_state)
    if state.terminal:
        for data in cancel_timers(instance.timers, reason=f"migrated to final state {to_state!r} of version "
                                                          f"{target.version}", kinds=ALL):
            recorder.record(EventType.TIMER_CANCELLED, data)
        if instance.status is Status.WAITING:
            recorder.record(EventType.COMPLETED, {"state": to_state})
    else:
        for timer in instance.timers:
            if timer.kind != "timeout":
                continue
            timeout = state.timeout(timer.id)
            if timeout is None:
                for data in cancel_timers([timer], reason=f"state {to_state!r} of version {target.version} has no "
                                                          f"timeout {timer.id!r}"):
                    recorder.record(EventType.TIMER_CANCELLED, data)
                continue
            assert timer.entry_sequence is not None
            recorder.record(EventType.TIMER_SCHEDULED, scheduled(
                timeout, instance_id=instance.id, state=to_state, entry_sequence=timer.entry_sequence, n=timer.n,
                due=parse_time(timer.due_at)))
    after = fold(instance, recorder.events)
    assert after is not None
    return Decision(Outcome.MIGRATED, tuple(recorder.events), after)

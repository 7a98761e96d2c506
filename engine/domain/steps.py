"""Running a definition's steps on an instance: its conditions and actions (a registered one's own error faults,
it does not crash the worker), entering a state, and the interests an instance has in a state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.domain.decision import instance_view
from engine.domain.definition import ActionStep, ConditionStep, State, WorkflowDefinition
from engine.domain.errors import ExecutionError
from engine.domain.extensions import ContextChange, RetryAction, Scope, Services
from engine.domain.instance import Instance, Status
from engine.domain.interests import interests_of

__all__ = ["context_changes", "enter_state", "failing_condition", "interests_in_state", "run_actions"]


def failing_condition(conditions: tuple[ConditionStep, ...], scope: Scope) -> ConditionStep | None:
    """The first condition that does not hold, or None. Raises ExecutionError if one errors."""
    for step in conditions:
        try:
            holds = step.impl.holds(scope, step.where)
        except (ExecutionError, RetryAction):
            raise
        except Exception as e:  # a registered condition's own bug must fault, not crash the worker
            raise ExecutionError(step.where, type(e).__name__, str(e) or repr(e)) from e
        if not holds:
            return step
    return None


def run_actions(actions: tuple[ActionStep, ...], scope: Scope, changes: dict[str, Any], removed: set[str]) -> None:
    for step in actions:
        try:
            change: ContextChange = step.impl.run(scope, step.where)
        except (ExecutionError, RetryAction):
            raise
        except Exception as e:
            raise ExecutionError(step.where, type(e).__name__, str(e) or repr(e)) from e
        if change.empty:
            continue
        context = dict(scope.context)
        for key, value in change.set.items():
            context[key] = value
            changes[key] = value
            removed.discard(key)
        for key in change.remove:
            context.pop(key, None)
            changes.pop(key, None)
            removed.add(key)
        scope.context = context


def enter_state(state: State, scope: Scope, changes: dict[str, Any], removed: set[str]) -> None:
    """Enter `state` with no trigger to weigh (creation, a retried creation): a false entry condition is a fault."""
    failed = failing_condition(state.entry_conditions, scope)
    if failed is not None:
        raise ExecutionError(failed.where, "EntryConditionFailed",
                             f"an entry condition of state {state.id!r} does not hold")
    run_actions(state.entry_actions, scope, changes, removed)


def context_changes(changes: dict[str, Any], removed: set[str]) -> dict[str, Any]:
    return {"set": changes, "removed": sorted(removed)}


def interests_in_state(instance: Instance, workflow: WorkflowDefinition, state_id: str, context: Mapping[str, Any],
                       sequence: int, services: Services) -> tuple[str, ...]:
    """The interests of `instance` in state `state_id` with `context` (raises ExecutionError)."""
    scope = Scope(instance_view(instance.id, workflow, state_id, Status.WAITING, instance.version), dict(context), None,
                  sequence, services)
    return interests_of(instance.id, instance.given_interests, workflow.state(state_id).interests, scope)

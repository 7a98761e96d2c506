"""Workflow definitions: JSON documents, parsed and validated once, with every problem listed."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.domain.errors import InvalidDefinition, Problem
from engine.domain.extensions import Action, Condition, Registry, SpecProblems
from engine.domain.interests import Interest, parse_interests
from engine.domain.timers import Timeout, parse_timeouts

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
MAX_STATES = 1000
MAX_ITEMS = 200  # conditions, actions or transitions in one list


@dataclass(frozen=True)
class Step:
    """A condition or an action as built from its spec, with where it sits in the definition."""

    type: str
    where: str
    spec: Mapping[str, Any]


@dataclass(frozen=True)
class ConditionStep(Step):
    impl: Condition


@dataclass(frozen=True)
class ActionStep(Step):
    impl: Action


@dataclass(frozen=True)
class Transition:
    id: str
    trigger: str | None  # the topic it answers; None: any topic (Marain.Workflow's transitions without one)
    target: str
    conditions: tuple[ConditionStep, ...] = ()
    actions: tuple[ActionStep, ...] = ()
    display_name: str | None = None


@dataclass(frozen=True)
class State:
    id: str
    display_name: str | None = None
    transitions: tuple[Transition, ...] = ()
    entry_conditions: tuple[ConditionStep, ...] = ()
    exit_conditions: tuple[ConditionStep, ...] = ()
    entry_actions: tuple[ActionStep, ...] = ()
    exit_actions: tuple[ActionStep, ...] = ()
    interests: tuple[Interest, ...] = ()  # what an instance listens to while here (engine/domain/interests.py)
    timeouts: tuple[Timeout, ...] = ()  # engine/domain/timers.py

    @property
    def terminal(self) -> bool:
        return not self.transitions

    def timeout(self, timer_id: str) -> Timeout | None:
        return next((timeout for timeout in self.timeouts if timeout.id == timer_id), None)


@dataclass(frozen=True)
class WorkflowDefinition:
    id: str
    version: int
    initial_state: str
    states: Mapping[str, State]
    display_name: str | None = None
    event_subscriptions: tuple[Mapping[str, Any], ...] = ()
    document: Mapping[str, Any] = field(default_factory=dict)  # as uploaded, for GET

    def state(self, state_id: str) -> State:
        return self.states[state_id]


class _DuplicateKeys(dict[str, Any]):
    """A JSON object that remembers which of its keys appeared more than once."""

    duplicates: list[str]


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = _DuplicateKeys()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


def load_json(text: str | bytes) -> Any:
    """Parse JSON keeping track of duplicate keys (a duplicate state id would otherwise vanish)."""
    return json.loads(text, object_pairs_hook=_pairs_hook)


def parse_definition(document: Any, registry: Registry, *, version: int = 0) -> WorkflowDefinition:
    """Build a definition from its JSON document, or raise `InvalidDefinition` listing every problem."""
    problems: list[Problem] = []

    def problem(path: str, message: str) -> None:
        problems.append(Problem(path, message))

    if not isinstance(document, dict):
        raise InvalidDefinition(None, [Problem("$", "a workflow definition must be a JSON object")])
    _duplicates(document, "$", problem)
    workflow_id = document.get("id")
    if not isinstance(workflow_id, str) or not ID_PATTERN.match(workflow_id):
        problem("$.id", "is required: letters, digits, '.', '_', ':' or '-', at most 128 characters")
        workflow_id = None
    display_name = _optional_str(document, "displayName", "$", problem)
    subscriptions = _subscriptions(document.get("eventSubscriptions", []), problem)

    raw_states = document.get("states")
    states: dict[str, State] = {}
    if not isinstance(raw_states, dict) or not raw_states:
        problem("$.states", "is required: an object of state id to state")
        raw_states = {}
    elif len(raw_states) > MAX_STATES:
        problem("$.states", f"has {len(raw_states)} states; at most {MAX_STATES} are allowed")
        raw_states = {}
    transition_ids: dict[str, str] = {}
    for state_id, raw_state in raw_states.items():
        path = f"$.states.{state_id}"
        if not ID_PATTERN.match(state_id):
            problem(path, "a state id is letters, digits, '.', '_', ':' or '-', at most 128 characters")
        if not isinstance(raw_state, dict):
            problem(path, "a state must be an object")
            continue
        transitions = []
        raw_transitions = _list(raw_state, "transitions", path, problem)
        for index, raw_transition in enumerate(raw_transitions):
            tpath = f"{path}.transitions[{index}]"
            raw_id = raw_transition.get("id") if isinstance(raw_transition, dict) else None
            if isinstance(raw_id, str) and raw_id in transition_ids:
                problem(f"{tpath}.id", f"duplicate transition id {raw_id!r} (also at {transition_ids[raw_id]})")
            elif isinstance(raw_id, str):
                transition_ids[raw_id] = tpath
            transition = _transition(raw_transition, tpath, raw_states, registry, problem)
            if transition is not None:
                transitions.append(transition)
        states[state_id] = State(
            id=state_id,
            display_name=_optional_str(raw_state, "displayName", path, problem),
            transitions=tuple(transitions),
            entry_conditions=_conditions(raw_state, "entryConditions", path, registry, problem),
            exit_conditions=_conditions(raw_state, "exitConditions", path, registry, problem),
            entry_actions=_actions(raw_state, "entryActions", path, registry, problem),
            exit_actions=_actions(raw_state, "exitActions", path, registry, problem),
            interests=parse_interests(raw_state.get("interests"), f"{path}.interests", problem),
            timeouts=_timeouts(raw_state, path, raw_transitions, problem),
        )

    initial = document.get("initialState")
    if not isinstance(initial, str) or not initial:
        problem("$.initialState", "is required: the id of the state new instances start in")
    elif raw_states and initial not in raw_states:
        problem("$.initialState", f"names the state {initial!r}, which is not defined")
    elif states:
        reachable = _reachable(initial, states)
        for state_id in states:
            if state_id not in reachable:
                problem(f"$.states.{state_id}", f"is unreachable from the initial state {initial!r}")

    if problems:
        raise InvalidDefinition(workflow_id, problems)
    assert workflow_id is not None and isinstance(initial, str)
    return WorkflowDefinition(
        id=workflow_id,
        version=version,
        initial_state=initial,
        states=states,
        display_name=display_name,
        event_subscriptions=subscriptions,
        document=document,
    )


def _timeouts(raw_state: Mapping[str, Any], path: str, raw_transitions: list[Any],
              problem: Any) -> tuple[Timeout, ...]:
    """The state's timeouts; a timeout whose topic no transition of the state answers could never do anything."""
    timeouts = parse_timeouts(raw_state, path, problem)
    topics = {raw.get("trigger") for raw in raw_transitions if isinstance(raw, dict)}
    for timeout in timeouts:
        if timeout.topic not in topics:
            problem(f"{timeout.where}.trigger.topic", f"no transition of this state answers topic {timeout.topic!r}")
    return timeouts


def _reachable(initial: str, states: Mapping[str, State]) -> set[str]:
    seen = {initial}
    todo = [initial]
    while todo:
        state = states.get(todo.pop())
        for transition in state.transitions if state else ():
            if transition.target not in seen:
                seen.add(transition.target)
                todo.append(transition.target)
    return seen


def _duplicates(obj: Any, path: str, problem: Any) -> None:
    if isinstance(obj, _DuplicateKeys):
        for key in obj.duplicates:
            problem(f"{path}.{key}", "is given more than once (duplicate id)")
    if isinstance(obj, dict):
        for key, value in obj.items():
            _duplicates(value, f"{path}.{key}", problem)
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            _duplicates(value, f"{path}[{index}]", problem)


def _optional_str(obj: Mapping[str, Any], key: str, path: str, problem: Any) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        problem(f"{path}.{key}", "must be a string")
        return None
    return value


def _list(obj: Mapping[str, Any], key: str, path: str, problem: Any) -> list[Any]:
    value = obj.get(key, [])
    if not isinstance(value, list):
        problem(f"{path}.{key}", "must be a list")
        return []
    if len(value) > MAX_ITEMS:
        problem(f"{path}.{key}", f"has {len(value)} items; at most {MAX_ITEMS} are allowed")
        return []
    return value


def _transition(raw: Any, path: str, raw_states: Mapping[str, Any], registry: Registry,
                problem: Any) -> Transition | None:
    if not isinstance(raw, dict):
        problem(path, "a transition must be an object")
        return None
    ok = True
    for key in ("id", "target"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            problem(f"{path}.{key}", "is required (a non-empty string)")
            ok = False
    trigger = raw.get("trigger")
    if trigger is not None and (not isinstance(trigger, str) or not trigger):
        problem(f"{path}.trigger", "must be a non-empty string (the topic it answers), or left out (any topic)")
        ok = False
    target = raw.get("target")
    if isinstance(target, str) and target and target not in raw_states:
        problem(f"{path}.target", f"names the state {target!r}, which is not defined")
        ok = False
    conditions = _conditions(raw, "conditions", path, registry, problem)
    actions = _actions(raw, "actions", path, registry, problem)
    display_name = _optional_str(raw, "displayName", path, problem)
    if not ok:
        return None
    return Transition(id=raw["id"], trigger=trigger, target=raw["target"], conditions=conditions,
                      actions=actions, display_name=display_name)


def _steps(obj: Mapping[str, Any], key: str, path: str, factories: Mapping[str, Any], kind: str,
           problem: Any) -> list[tuple[str, str, Mapping[str, Any], Any]]:
    built: list[tuple[str, str, Mapping[str, Any], Any]] = []
    for index, spec in enumerate(_list(obj, key, path, problem)):
        where = f"{path}.{key}[{index}]"
        if not isinstance(spec, dict):
            problem(where, f"a {kind} must be an object with a `type`")
            continue
        type_name = spec.get("type")
        factory = factories.get(type_name) if isinstance(type_name, str) else None
        if factory is None:
            known = ", ".join(sorted(factories))
            problem(f"{where}.type", f"unknown {kind} type {type_name!r} (known: {known})")
            continue
        try:
            built.append((str(type_name), where, spec, factory(spec)))
        except SpecProblems as e:
            for sub, message in e.problems:
                problem(f"{where}.{sub}", message)
    return built


def _conditions(obj: Mapping[str, Any], key: str, path: str, registry: Registry,
                problem: Any) -> tuple[ConditionStep, ...]:
    return tuple(ConditionStep(t, w, s, impl) for t, w, s, impl in
                 _steps(obj, key, path, registry.conditions, "condition", problem))


def _actions(obj: Mapping[str, Any], key: str, path: str, registry: Registry,
             problem: Any) -> tuple[ActionStep, ...]:
    return tuple(ActionStep(t, w, s, impl) for t, w, s, impl in
                 _steps(obj, key, path, registry.actions, "action", problem))


MAX_DEFINITION_SUBSCRIPTIONS = 10  # webhooks one definition's events fan out to (beside the tenant's own)


def _subscriptions(raw: Any, problem: Any) -> tuple[Mapping[str, Any], ...]:
    if not isinstance(raw, list):
        problem("$.eventSubscriptions", "must be a list of {\"endpoint\": url}")
        return ()
    if len(raw) > MAX_DEFINITION_SUBSCRIPTIONS:
        problem("$.eventSubscriptions", f"has {len(raw)} subscriptions; a definition may have at most "
                                        f"{MAX_DEFINITION_SUBSCRIPTIONS} (the tenant's own, through the API, are "
                                        "counted apart)")
    for index, item in enumerate(raw):
        where = f"$.eventSubscriptions[{index}]"
        endpoint = item.get("endpoint") if isinstance(item, dict) else None
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            problem(f"{where}.endpoint", "must be an absolute http(s) URL")
        if not isinstance(item, dict):
            continue
        types = item.get("types", [])
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            problem(f"{where}.types", "must be a list of CloudEvent types")
        if item.get("mode", "structured") not in ("structured", "binary"):
            problem(f"{where}.mode", "must be `structured` or `binary`")
        if "secret" in item and (not isinstance(item["secret"], str) or not item["secret"]):
            problem(f"{where}.secret", "must be a non-empty string")
    return tuple(raw)


def mermaid(definition: WorkflowDefinition, *, highlight: str | None = None) -> str:
    """The definition as a Mermaid `stateDiagram-v2`."""
    def node(state_id: str) -> str:
        return re.sub(r"[^A-Za-z0-9_]", "_", state_id)

    lines = ["stateDiagram-v2"]
    for state in definition.states.values():
        label = (state.display_name or state.id).replace('"', "'")
        lines.append(f'    state "{label}" as {node(state.id)}')
    lines.append(f"    [*] --> {node(definition.initial_state)}")
    for state in definition.states.values():
        for transition in state.transitions:
            label = (transition.trigger or "any").replace(":", " ")
            lines.append(f"    {node(state.id)} --> {node(transition.target)} : {label}")
        if state.terminal:
            lines.append(f"    {node(state.id)} --> [*]")
    if highlight is not None and highlight in definition.states:
        lines.append("    classDef current fill:#f96,stroke:#333,stroke-width:2px")
        lines.append(f"    class {node(highlight)} current")
    return "\n".join(lines) + "\n"

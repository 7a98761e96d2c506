"""Converting a Marain.Workflow definition (its JSON, as Marain.Workflow serializes `Workflow`) to a Waymark one.

What maps to what (docs/marain.md):

    Workflow {id, displayName, description, initialStateId, states, workflowEventSubscriptions}
        → {id, displayName, description, initialState, states, eventSubscriptions}
    WorkflowState {id, displayName, description, entry/exit conditions and actions, transitions}
        → the same; its `interests` are what Marain's conditions report (`GetInterests`)
    WorkflowTransition {id, targetStateId, conditions, actions} → {id, target, trigger?, conditions, actions}

Marain's triggers become Waymark triggers this way (what clients send, once converted): a hosted trigger
`{triggerName, parameters, subjects}` is `{"topic": triggerName, "content": parameters, "subjects": subjects}`;
an entity-id trigger `{entityId, activity}` is `{"topic": activity, "content": {"entityId": …}, "subjects":
[entityId]}`; any other trigger is `{"topic": <its contentType>, "content": <its JSON>}`. So the trigger-name
condition (and the entity-id condition's activity, and a trigger-content-type condition) become the transition's
`trigger` topic; trigger parameters and entity ids become CEL over `trigger.content`; external-service conditions
and actions become `http` ones whose body is Marain's `ExternalServiceWorkflowRequest`; log actions become `log`
with their `{context.X}` placeholders as CEL.

What cannot be converted is listed, never dropped silently: an unknown condition becomes `false` (the transition
or state it guards is never taken or entered: fail closed) and an unknown action is left out; both keep their
original JSON under `metadata.marain`. An external service called with the host's managed identity keeps it
(`auth: {"type": "managedIdentity", "audience": <msiAuthenticationResource>}`); a definition's event subscription
cannot (Waymark signs webhooks with HMAC instead): subscribed without it, and listed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Conversion", "convert_marain"]

_CT = "application/vnd.marain.workflows."
HOSTED_TRIGGER = _CT + "hosted.trigger"
ENTITY_ID_TRIGGER = _CT + "entityid"
EXTERNAL_REQUEST = _CT + "externalservicerequest"
TRIGGER_NAME = _CT + "hosted.triggernamecondition"
TRIGGER_PARAMETER = _CT + "hosted.triggerparametervaluecondition"
TRIGGER_CONTENT_TYPE = _CT + "triggercontenttypecondition"
ENTITY_ID = _CT + "entityidcondition"
EXTERNAL_CONDITION = _CT + "invokeexternalservicecondition"
EXTERNAL_ACTION = _CT + "invokeexternalserviceaction"
LOG_ACTION = _CT + "logaction"
# Keys Marain writes that carry nothing a definition needs (serialization and storage artefacts).
_ARTEFACTS = frozenset({"contenttype", "_etag", "etag", "partitionkey", "_rid", "_self", "_attachments", "_ts"})
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_PARAMETER_TESTS = ("Equality", "Inequality", "Existence", "NonExistence")


@dataclass
class Conversion:
    """The Waymark definition, what could not be converted (path and why), and notes on what changed meaning."""

    definition: dict[str, Any]
    unconverted: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unconverted


def _get(obj: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """A property by its camelCase name, or in any case (Marain's serializer settings decide the casing)."""
    if name in obj:
        return obj[name]
    lowered = name.lower()
    for key, value in obj.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return default


def _cel(text: str) -> str:
    """A CEL string literal."""
    return json.dumps(text, ensure_ascii=False)


def _context(key: str) -> str:
    return f"context[{_cel(key)}]"


class _Converter:
    def __init__(self) -> None:
        self.unconverted: list[tuple[str, str]] = []
        self.notes: list[tuple[str, str]] = []
        self.ids: dict[str, str] = {}

    def lost(self, path: str, why: str) -> None:
        self.unconverted.append((path, why))

    def note(self, path: str, what: str) -> None:
        self.notes.append((path, what))

    def unknown_keys(self, obj: Mapping[str, Any], known: set[str], path: str) -> None:
        for key in obj:
            if str(key).lower() not in known and str(key).lower() not in _ARTEFACTS:
                self.lost(f"{path}.{key}", "a property Waymark has no place for")

    def id_of(self, raw: Any, path: str) -> str:
        text = str(raw) if raw is not None else ""
        if text in self.ids:
            return self.ids[text]
        converted = text if _ID.match(text) else (re.sub(r"[^A-Za-z0-9._:-]", "-", text).strip("-._:")[:128] or "x")
        if not converted[0].isalnum():
            converted = "s" + converted[:127]
        if converted != text:
            self.note(path, f"id {text!r} became {converted!r} (Waymark ids are letters, digits, '.', '_', ':', '-')")
        self.ids[text] = converted
        return converted

    # ------------------------------------------------------------------------------------------ workflow

    def workflow(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        self.unknown_keys(doc, {"id", "displayname", "description", "initialstateid", "states",
                                "workfloweventsubscriptions", "eventsubscriptions"}, "$")
        raw_states = _get(doc, "states") or {}
        items = list(raw_states.items()) if isinstance(raw_states, Mapping) else [
            (_get(s, "id"), s) for s in raw_states if isinstance(s, Mapping)]
        result: dict[str, Any] = {}
        if _get(doc, "id") is not None:
            result["id"] = self.id_of(_get(doc, "id"), "$.id")
        for key in ("displayName", "description"):
            if isinstance(_get(doc, key), str):
                result[key] = _get(doc, key)
        initial = _get(doc, "initialStateId")
        if initial is not None:
            result["initialState"] = self.id_of(initial, "$.initialStateId")
        subscriptions = _get(doc, "workflowEventSubscriptions", _get(doc, "eventSubscriptions")) or []
        converted_subscriptions = [s for i, raw in enumerate(subscriptions)
                                   if (s := self.subscription(raw, f"$.workflowEventSubscriptions[{i}]"))]
        if converted_subscriptions:
            result["eventSubscriptions"] = converted_subscriptions
        result["states"] = {self.id_of(key, f"$.states.{key}"): self.state(raw, f"$.states.{key}")
                            for key, raw in items}
        result["metadata"] = {"marain": {"convertedFrom": "Marain.Workflow"}}
        return result

    def subscription(self, raw: Any, path: str) -> dict[str, Any] | None:
        if not isinstance(raw, Mapping) or not isinstance(_get(raw, "externalUrl"), str):
            self.lost(path, "an event subscription without an `externalUrl`")
            return None
        if _get(raw, "msiAuthenticationResource"):
            self.lost(f"{path}.msiAuthenticationResource", "Waymark webhooks do not authenticate with a managed "
                      "identity; subscribed without it (give the subscription a `secret` to have deliveries signed)")
        self.unknown_keys(raw, {"externalurl", "msiauthenticationresource", "authenticatewithmanagedserviceidentity"},
                          path)
        return {"endpoint": _get(raw, "externalUrl")}

    # ------------------------------------------------------------------------------------------ states

    def state(self, raw: Any, path: str) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            self.lost(path, "a state that is not an object")
            return {}
        self.unknown_keys(raw, {"id", "displayname", "description", "entryconditions", "exitconditions",
                                "entryactions", "exitactions", "transitions"}, path)
        state: dict[str, Any] = {}
        for key in ("displayName", "description"):
            if isinstance(_get(raw, key), str):
                state[key] = _get(raw, key)
        interests: list[Any] = []
        kept: dict[str, list[Any]] = {}
        for key in ("entryConditions", "exitConditions"):
            conditions, found = self.conditions(_get(raw, key) or [], f"{path}.{key}", kept)
            interests += found
            if conditions:
                state[key] = conditions
        for key in ("entryActions", "exitActions"):
            actions = self.actions(_get(raw, key) or [], f"{path}.{key}", kept)
            if actions:
                state[key] = actions
        transitions = []
        for index, item in enumerate(_get(raw, "transitions") or []):
            transition, found = self.transition(item, f"{path}.transitions[{index}]")
            interests += found
            transitions.append(transition)
        if transitions:
            state["transitions"] = transitions
        unique: list[Any] = []
        for interest in interests:
            if interest not in unique:
                unique.append(interest)
        if unique:
            state["interests"] = unique
        if kept:
            state["metadata"] = {"marain": {"unconverted": kept}}
        return state

    def transition(self, raw: Any, path: str) -> tuple[dict[str, Any], list[Any]]:
        if not isinstance(raw, Mapping):
            self.lost(path, "a transition that is not an object")
            return {"id": "x", "target": "x"}, []
        self.unknown_keys(raw, {"id", "displayname", "description", "targetstateid", "conditions", "actions"}, path)
        transition: dict[str, Any] = {"id": self.id_of(_get(raw, "id") or path.rsplit(".", 1)[-1], f"{path}.id")}
        topics: list[str] = []
        kept: dict[str, list[Any]] = {}
        conditions, interests = self.conditions(_get(raw, "conditions") or [], f"{path}.conditions", kept, topics)
        if topics:
            transition["trigger"] = topics[0]
            conditions = [{"type": "expression", "expression": f"trigger.topic == {_cel(t)}"} for t in topics[1:]] \
                + conditions
        transition["target"] = self.id_of(_get(raw, "targetStateId"), f"{path}.targetStateId")
        for key in ("displayName", "description"):
            if isinstance(_get(raw, key), str):
                transition[key] = _get(raw, key)
        if conditions:
            transition["conditions"] = conditions
        actions = self.actions(_get(raw, "actions") or [], f"{path}.actions", kept)
        if actions:
            transition["actions"] = actions
        if kept:
            transition["metadata"] = {"marain": {"unconverted": kept}}
        return transition, interests

    # ------------------------------------------------------------------------------------------ conditions

    def conditions(self, raws: list[Any], path: str, kept: dict[str, list[Any]],
                   topics: list[str] | None = None) -> tuple[list[dict[str, Any]], list[Any]]:
        """Converted conditions, and the interests they report. On a transition (`topics` given), a condition on
        the trigger's name becomes its topic instead of a condition."""
        converted: list[dict[str, Any]] = []
        interests: list[Any] = []
        names = [c for c in raws if isinstance(c, Mapping) and _get(c, "contentType") == TRIGGER_NAME]
        for index, raw in enumerate(raws):
            where = f"{path}[{index}]"
            if not isinstance(raw, Mapping):
                self.lost(where, "a condition that is not an object")
                continue
            kind = _get(raw, "contentType")
            if kind == TRIGGER_NAME:
                name = str(_get(raw, "triggerName"))
                interests.append(name)
                if topics is not None:
                    topics.append(name)
                else:
                    converted.append({"type": "expression", "expression": f"trigger.topic == {_cel(name)}"})
            elif kind == TRIGGER_CONTENT_TYPE:
                converted += self.content_type(raw, where, topics, names)
            elif kind == TRIGGER_PARAMETER:
                converted.append(self.parameter(raw, where))
            elif kind == ENTITY_ID:
                condition, interest = self.entity_id(raw, topics)
                converted.append(condition)
                interests.append(interest)
            elif kind == EXTERNAL_CONDITION:
                converted.append(self.external(raw, where, condition=True))
                found = _get(raw, "interests") or []
                interests += [str(i) for i in found]
            else:
                self.lost(where, f"condition type {kind!r} has no Waymark equivalent: it became `false` (what it "
                                 "guards is never taken); its JSON is kept under metadata.marain")
                kept.setdefault("conditions", []).append(raw)
                converted.append({"type": "expression", "expression": "false",
                                  "description": f"Marain condition {kind} (not converted)"})
        return converted, interests

    def content_type(self, raw: Mapping[str, Any], where: str, topics: list[str] | None,
                     names: list[Any]) -> list[dict[str, Any]]:
        wanted = str(_get(raw, "triggerContentType"))
        if wanted == HOSTED_TRIGGER:
            if not names:
                self.note(where, "the trigger-content-type condition on hosted triggers was dropped: a Waymark "
                                 "trigger has no content type (a hosted trigger's name is its topic)")
            return []
        if wanted == ENTITY_ID_TRIGGER:
            return [{"type": "expression",
                     "expression": "trigger.content != null && 'entityId' in trigger.content"}]
        if names:
            self.note(where, f"a trigger-name condition and the content type {wanted!r}: never both true in "
                             "Marain (only hosted triggers have names); converted as `false`")
            return [{"type": "expression", "expression": "false"}]
        if topics is not None:
            topics.append(wanted)
            return []
        return [{"type": "expression", "expression": f"trigger.topic == {_cel(wanted)}"}]

    def parameter(self, raw: Mapping[str, Any], where: str) -> dict[str, Any]:
        name, value = str(_get(raw, "parameterName")), _get(raw, "parameterValue")
        test = _get(raw, "parameterTestType", "Equality")
        if isinstance(test, int) and 0 <= test < len(_PARAMETER_TESTS):
            test = _PARAMETER_TESTS[test]
        present = f"trigger.content != null && {_cel(name)} in trigger.content"
        read = f"trigger.content[{_cel(name)}]"
        expression = {
            "Equality": f"{present} && {read} == {_cel(str(value))}",
            "Inequality": f"{present} && {read} != {_cel(str(value))}",
            "Existence": present,
            "NonExistence": f"!({present})",
        }.get(str(test))
        if expression is None:
            self.lost(f"{where}.parameterTestType", f"unknown test {test!r}: became `false`")
            expression = "false"
        return {"type": "expression", "expression": expression}

    def entity_id(self, raw: Mapping[str, Any], topics: list[str] | None) -> tuple[dict[str, Any], Any]:
        key, activity = str(_get(raw, "entityIdContextProperty")), _get(raw, "activity")
        checks = []
        if activity is not None:
            if topics is not None:
                topics.append(str(activity))
            else:
                checks.append(f"trigger.topic == {_cel(str(activity))}")
        checks.append(f"{_cel(key)} in context && trigger.content != null && 'entityId' in trigger.content && "
                      f"string({_context(key)}) == string(trigger.content.entityId)")
        interest = {"expression": f"{_cel(key)} in context ? [string({_context(key)})] : []"}
        return {"type": "expression", "expression": " && ".join(checks)}, interest

    def external(self, raw: Mapping[str, Any], where: str, *, condition: bool) -> dict[str, Any]:
        method = _get(raw, "httpMethod", "POST") if condition else "POST"
        if isinstance(method, Mapping):  # System.Net.Http.HttpMethod serialized as an object
            method = _get(method, "method", "POST")
        method = str(method).upper()
        spec: dict[str, Any] = {"type": "http", "method": method, "url": _get(raw, "externalUrl")}
        if method != "GET":
            items = [str(k) for k in _get(raw, "contextItemsToInclude") or []]
            included = ", ".join(f"{_cel(k)}: {_cel(k)} in context ? {_context(k)} : null" for k in items)
            invoked_by = _cel(str(_get(raw, "id") or ""))
            spec["body"] = ("{'contentType': " + _cel(EXTERNAL_REQUEST) + ", 'workflowId': instance.workflowId, "
                            "'workflowInstanceId': instance.id, 'workflowInstanceCurrentStateId': instance.state, "
                            "'workflowInstanceCurrentStatus': instance.status, 'invokedById': " + invoked_by
                            + ", 'trigger': trigger, 'contextProperties': {" + included + "}}")
        if _get(raw, "authenticateWithManagedServiceIdentity"):
            resource = _get(raw, "msiAuthenticationResource")
            if isinstance(resource, str) and resource.strip():
                spec["auth"] = {"type": "managedIdentity", "audience": resource.strip()}  # the app's identity
            else:
                self.lost(f"{where}.authenticateWithManagedServiceIdentity",
                          "managed-identity authentication without an `msiAuthenticationResource` (the audience of "
                          "the token): converted without authentication")
        self.unknown_keys(raw, {"id", "externalurl", "httpmethod", "contextitemstoinclude", "interests",
                                "authenticatewithmanagedserviceidentity", "msiauthenticationresource"}, where)
        return spec

    # ------------------------------------------------------------------------------------------ actions

    def actions(self, raws: list[Any], path: str, kept: dict[str, list[Any]]) -> list[dict[str, Any]]:
        converted: list[dict[str, Any]] = []
        for index, raw in enumerate(raws):
            where = f"{path}[{index}]"
            if not isinstance(raw, Mapping):
                self.lost(where, "an action that is not an object")
                continue
            kind = _get(raw, "contentType")
            if kind == EXTERNAL_ACTION:
                converted.append(self.external(raw, where, condition=False))
            elif kind == LOG_ACTION:
                converted.append({"type": "log", "message": _log_message(str(_get(raw, "logMessage") or ""))})
            else:
                self.lost(where, f"action type {kind!r} has no Waymark equivalent: left out; its JSON is kept under "
                                 "metadata.marain")
                kept.setdefault("actions", []).append(raw)
        return converted


_PLACEHOLDER = re.compile(r"\{context\.([^}]*)\}")


def _log_message(template: str) -> str:
    """Marain's `{context.Key}` placeholders as CEL: the value where the key is in the context, else the placeholder
    as written (what Marain's LogAction does)."""
    parts: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        if match.start() > position:
            parts.append(_cel(template[position:match.start()]))
        key = match.group(1)
        parts.append(f"({_cel(key)} in context ? string({_context(key)}) : {_cel(match.group(0))})")
        position = match.end()
    if position < len(template) or not parts:
        parts.append(_cel(template[position:]))
    return " + ".join(parts)


def convert_marain(document: Any) -> Conversion:
    """A Marain.Workflow `Workflow` JSON document as a Waymark definition, with everything it could not convert."""
    converter = _Converter()
    if not isinstance(document, Mapping):
        return Conversion({}, [("$", "a Marain workflow is a JSON object")])
    definition = converter.workflow(document)
    return Conversion(definition, converter.unconverted, converter.notes)

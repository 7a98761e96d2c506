"""The secrets of a workflow definition: where they are, and a copy with each one replaced.

A definition carries two kinds of secret, sealed at rest and shown as REDACTED ("***") on every read:

- `eventSubscriptions[i].secret`: the HMAC key of a webhook subscription (its destination: the `endpoint`);
- every header value of an `http` condition or action (its destination: the `url`). Every value, not only those
  that look secret: a credential may sit in any header (`Authorization`, `X-Api-Key`, `Ocp-Apim-Subscription-Key`,
  a custom one), and a header such as `Accept` shown as "***" costs little.

A secret is named by its JSON path (`$.states.draft.transitions[0].actions[1].headers.Authorization`, as the
validation's problems are) and belongs to a destination, so that a secret kept from an earlier version (an upload
that sends "***" back) only ever goes where it was given for.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["REDACTED", "SecretSlot", "redacted", "replace_secrets", "secret_slots"]

REDACTED = "***"
_STATE_LISTS = ("entryConditions", "exitConditions", "entryActions", "exitActions")
_TRANSITION_LISTS = ("conditions", "actions")


@dataclass(frozen=True, slots=True)
class SecretSlot:
    path: str
    value: str
    destination: str | None


def secret_slots(document: Mapping[str, Any]) -> list[SecretSlot]:
    """Every secret of a definition document (of any shape: whatever is not where a secret goes is skipped)."""
    return [SecretSlot(path, holder[key], destination) for path, holder, key, destination in _places(document)]


def replace_secrets(document: Mapping[str, Any], replace: Callable[[SecretSlot], str]) -> dict[str, Any]:
    """A deep copy of `document` with each secret replaced by `replace(slot)`."""
    copied: dict[str, Any] = copy.deepcopy(dict(document))
    for path, holder, key, destination in list(_places(copied)):
        holder[key] = replace(SecretSlot(path, holder[key], destination))
    return copied


def redacted(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document as it may be shown: every secret REDACTED."""
    return replace_secrets(document, lambda slot: REDACTED)


Place = tuple[str, dict[str, Any], str, str | None]  # path, the object holding the value, its key, destination


def _places(document: Mapping[str, Any]) -> Iterator[Place]:
    subscriptions = document.get("eventSubscriptions")
    if isinstance(subscriptions, list):
        for index, subscription in enumerate(subscriptions):
            if isinstance(subscription, dict) and isinstance(subscription.get("secret"), str):
                yield (f"$.eventSubscriptions[{index}].secret", subscription, "secret",
                       _text(subscription.get("endpoint")))
    states = document.get("states")
    if not isinstance(states, dict):
        return
    for state_id, state in states.items():
        if not isinstance(state, dict):
            continue
        for name in _STATE_LISTS:
            yield from _headers(f"$.states.{state_id}.{name}", state.get(name))
        transitions = state.get("transitions")
        for index, transition in enumerate(transitions if isinstance(transitions, list) else []):
            if isinstance(transition, dict):
                for name in _TRANSITION_LISTS:
                    yield from _headers(f"$.states.{state_id}.transitions[{index}].{name}", transition.get(name))


def _headers(path: str, specs: Any) -> Iterator[Place]:
    """The header values of the `http` conditions or actions in a list of specs."""
    for index, spec in enumerate(specs if isinstance(specs, list) else []):
        if not isinstance(spec, dict) or spec.get("type") != "http" or not isinstance(spec.get("headers"), dict):
            continue
        headers: dict[str, Any] = spec["headers"]
        for name, value in headers.items():
            if isinstance(value, str):
                yield f"{path}[{index}].headers.{name}", headers, name, _text(spec.get("url"))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None

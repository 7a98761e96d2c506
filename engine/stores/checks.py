"""The checks every event and definition store makes the same way: a malformed commit, a bad limit or page token,
a definition without an id. Each is the caller's error (ValueError, InvalidDefinition), never a storage one."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from engine.domain import Event, Instance, InvalidDefinition, Problem

__all__ = ["check_commit", "check_limit", "decode_continuation", "encode_continuation", "workflow_id_of"]


def check_commit(instance_id: str, expected_version: int, events: Sequence[Event], state: Instance) -> None:
    """A commit is one or more events of `instance_id`, numbered on from `expected_version` without a gap, and
    `state` is the instance after the last of them. Anything else is a caller's bug (ValueError)."""
    if not events:
        raise ValueError(f"a commit of instance {instance_id!r} needs at least one event")
    for offset, event in enumerate(events, start=expected_version + 1):
        if event.instance_id != instance_id or event.sequence != offset:
            raise ValueError(f"event {event.instance_id!r}#{event.sequence} does not follow version "
                             f"{offset - 1} of instance {instance_id!r}")
    if state.id != instance_id or state.version != events[-1].sequence:
        raise ValueError(f"the state given ({state.id!r} at version {state.version}) is not instance "
                         f"{instance_id!r} after event {events[-1].sequence}")


def check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")


def encode_continuation(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode("ascii")


def decode_continuation(continuation: str | None) -> str | None:
    """The id a page ended at. A token that is not one this store made is the caller's error (ValueError)."""
    if continuation is None:
        return None
    try:
        return base64.urlsafe_b64decode(continuation.encode("ascii")).decode()
    except (ValueError, binascii.Error) as e:  # UnicodeError is a ValueError
        raise ValueError(f"continuation token {continuation!r} is not valid") from e


def workflow_id_of(document: Mapping[str, Any]) -> str:
    workflow_id = document.get("id")
    if not isinstance(workflow_id, str) or not workflow_id:
        raise InvalidDefinition(None, [Problem("$.id", "is required to store a definition")])
    return workflow_id

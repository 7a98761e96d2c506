"""Retries of `http` steps that never sleep in a worker: the command goes back on the queue with a delay.

An `http` action or condition that fails in a way a retry may cure (no answer, 408, 425, 429, 5xx) raises
`RetryAction` from the domain while attempts remain. Its command's processing ends there, nothing is stored, and
`RetryLater` carries what to send again: the same command, with the attempts its steps made recorded under
`actionRetries` (so the step knows its next attempt's number and when its first was made), after the step's
backoff. The failure policy (engine/service/failures.py) sends it and completes the original, under the local
worker and the Azure queue function alike: the worker is free for other commands meanwhile, and the re-sent
message starts with a fresh dequeue count, so retries never push a command towards the poison queue.

A retry re-decides the command from the instance as it is then: the steps before the failed one run again, with
the same idempotency keys (`{instance}:{step}:{path}`), as they would after any redelivery.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from engine.domain import ActionAttempt, RetryAction
from engine.service.commands import CreateInstance, FireTimer, SendTrigger, to_message

__all__ = ["RetryLater", "retried"]


class RetryLater(Exception):
    """Send each of `resends` (a body, a delay in seconds) and complete the command at hand."""

    def __init__(self, resends: list[tuple[dict[str, Any], float]], reason: str) -> None:
        self.resends = resends
        self.reason = reason
        super().__init__(reason)


def retried(command: CreateInstance | SendTrigger | FireTimer, retry: RetryAction) -> RetryLater:
    """What to send again for `command` after `retry`: itself, with the attempt recorded."""
    attempts: Mapping[str, ActionAttempt] = command.action_retries
    again = replace(command, action_retries={**attempts, retry.where: ActionAttempt(retry.made, retry.since)})
    return RetryLater([(to_message(again), retry.delay)], str(retry))

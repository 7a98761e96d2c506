"""The queue worker: receive a batch of commands, process them, complete them — or leave one queued for a retry.

A command is completed only after its commit is stored (or it is known to be recorded already): a batch's
messages are deleted together, in one queue transaction after the last of its commits (see `process_batch`).

A command that fails goes where `CommandFailures` (engine/service/failures.py) says, as under the Azure queue
function: an outage holds it (a copy re-sent with a delay, the original completed), what can never succeed is
parked in its tenant's store, and anything else is released with a backoff, its dequeue count growing, and parked
on its last delivery. Without `failures` (tests of the queue alone), every failure is released with a backoff
until the queue poisons the message: nothing is dropped silently either way.

With a `gate` (engine/service/fairness.py), a tenant's commands occupy at most its limit of the pool's workers: one
whose tenant is at its limit is deferred (sent back with a short delay). The batch in progress (`batch`) is what the
pool's watchdog hands back when a slow command holds it up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from engine.domain import InstanceAlreadyExists
from engine.queues.base import CommandQueue, Message, MessageLost
from engine.service.commands import MalformedCommand, SendTrigger, from_message
from engine.service.failures import CommandFailures
from engine.service.fairness import BatchInProgress, TenantGate, send_back, tenant_of
from engine.service.parked import ParkedCommands
from engine.service.processor import CommandProcessor
from engine.service.results import Result
from engine.service.retrying import RetryLater

log = logging.getLogger("waymark.worker")


def _fields(message: Message) -> dict[str, Any]:
    return {"messageId": message.id, "dequeueCount": message.dequeue_count,
            "tenant": message.body.get("tenant"), "instanceId": message.body.get("instanceId")}


def retry_delay(dequeue_count: int) -> float:
    """Exponential backoff for a command that failed: 1, 2, 4 … seconds, at most a minute."""
    return float(min(60, 2 ** max(0, dequeue_count - 1)))


class Worker:
    def __init__(self, queue: CommandQueue, processor: CommandProcessor, *, visibility_timeout: float = 30.0,
                 batch_size: int = 16, idle_wait: float = 0.05, failures: CommandFailures | None = None,
                 gate: TenantGate | None = None, max_idle: float = 1.0) -> None:
        self.queue = queue
        self.processor = processor
        self.failures = failures
        self.gate = gate
        self.batch: BatchInProgress | None = None  # what this worker has received and not started yet
        self.visibility_timeout = visibility_timeout
        self.batch_size = batch_size
        self.idle_wait = idle_wait
        self.max_idle = max_idle

    def process(self, message: Message) -> bool:
        """Handle one message; True when it was completed (done with, for good)."""
        fields = _fields(message)
        return self._handle(message, fields) and self._complete_all([message])

    def _handle(self, message: Message, fields: dict[str, Any]) -> bool:
        """Process one message: True when it is done with (its commits stored, or it can never succeed) and may
        be completed; False when it was released for a retry."""
        failures = self.failures
        if failures is not None and failures.held_by_breaker(message.body, message_id=message.id):
            return True  # a copy is on the queue, delayed: this one is done with
        try:
            command = from_message(message.body)
            self.processor.handle(command)
        except Exception as e:
            if failures is not None and failures.failed(message.body, e, dequeue_count=message.dequeue_count,
                                                        message_id=message.id):
                return True  # held (a delayed copy is queued) or parked
            return self._unhandled(message, e, fields)
        if failures is not None:
            failures.succeeded(message.body)
        return True

    def _unhandled(self, message: Message, error: Exception, fields: dict[str, Any]) -> bool:
        """A failure nothing took care of: released for a retry (False; the queue poisons it after its last
        delivery), or, without `failures`, a command that can never succeed dropped with a warning (True)."""
        if self.failures is None and isinstance(error, MalformedCommand | InstanceAlreadyExists):
            # (An unknown instance is retried instead: its create may still be on the queue.)
            log.warning("command dropped as it cannot be processed: %s", error, extra=fields)
            return True
        log.error("processing failed; the command stays queued and is retried: %s", error, extra=fields,
                  exc_info=not isinstance(error, OSError))
        try:
            self.queue.release(message, delay=retry_delay(message.dequeue_count))
        except MessageLost:
            pass
        except Exception:
            log.exception("could not release the message; it comes back after its visibility timeout", extra=fields)
        return False

    def process_batch(self, messages: Sequence[Message], stop: threading.Event | None = None) -> None:
        """Handle a received batch. Consecutive triggers of one tenant are decided in order and stored in one
        group commit (`CommandProcessor.trigger_many`); every other command goes through `_handle`. A set `stop`
        releases what is not started yet.

        The messages done with are deleted from the queue at the end, all in one `complete_many` (one queue
        transaction, one sync): after every transaction that stored their commits has returned — and so, with
        synchronous=FULL, is on the disk. A crash at any moment leaves each command stored or still queued (or
        both: redelivered, it finds its trigger recorded), never neither."""
        done: list[Message] = []
        batch = self.batch = BatchInProgress(messages)
        try:
            self._process_runs(batch, done, stop)
        finally:
            self.batch = None
            self._complete_all(done)

    def _process_runs(self, batch: BatchInProgress, done: list[Message], stop: threading.Event | None) -> None:
        while rest := batch.unstarted():
            if stop is not None and stop.is_set():
                if batch.begin(len(rest)):
                    self._release_all(rest)
                return
            group = self._trigger_run(rest, 0)
            grouped = len(group) >= 2 and self._goes_ahead(group[0][1].tenant)
            chosen = [message for message, _ in group] if grouped else rest[:1]
            if not batch.begin(len(chosen)):
                return  # handed back meanwhile: another worker has them
            try:
                self._run(chosen, group if grouped else None, done)
            finally:
                batch.end()

    def _run(self, messages: list[Message], group: list[tuple[Message, SendTrigger]] | None,
             done: list[Message]) -> None:
        """One message, or a group of one tenant's triggers, in a slot of its tenant (deferred if none is free)."""
        tenant = tenant_of(messages[0].body)
        gate = self.gate
        with gate.slot(tenant) if gate is not None else nullcontext(True) as entered:
            if not entered:
                assert gate is not None
                done.extend(send_back(self.queue, messages,
                                      why=f"tenant {tenant} is at its limit of {gate.limit} worker(s)"))
                return
            if group is None:
                if self._handle(messages[0], _fields(messages[0])):
                    done.append(messages[0])
                return
            commands = [command for _, command in group]
            try:
                results = self.processor.trigger_many(commands[0].tenant,
                                                      [(c.instance_id, c.trigger) for c in commands])
            except Exception:  # the group as a whole could not start (storage away): each on its own
                results = [None] * len(group)  # type: ignore[list-item]
            for (message, _), result in zip(group, results, strict=True):
                # A trigger the group could not store is retried alone: it fails (and is released) or succeeds.
                # One whose `http` step asked for a retry goes back on the queue with its delay.
                if isinstance(result, Result) or self._retried(message, result) or self._handle(message,
                                                                                              _fields(message)):
                    done.append(message)

    def _retried(self, message: Message, result: object) -> bool:
        return isinstance(result, RetryLater) and self.failures is not None and self.failures.failed(
            message.body, result, dequeue_count=message.dequeue_count, message_id=message.id)

    def _goes_ahead(self, tenant: str) -> bool:
        """Whether a run of the tenant's triggers may be stored as a group: not while its breaker holds them."""
        return self.failures is None or self.failures.breakers.is_closed(tenant)

    def _trigger_run(self, messages: Sequence[Message], start: int) -> list[tuple[Message, SendTrigger]]:
        group: list[tuple[Message, SendTrigger]] = []
        for message in messages[start:]:
            try:
                command = from_message(message.body)
            except MalformedCommand:
                break
            if not isinstance(command, SendTrigger) or command.action_retries or (
                    group and command.tenant != group[0][1].tenant):
                break  # (a retried trigger goes alone: its steps' attempts are in its message)
            group.append((message, command))
        return group

    def _complete_all(self, messages: Sequence[Message]) -> bool:
        """Delete processed messages, in one queue transaction; False when that failed (the worker goes on
        either way: the commits are stored, and each message comes back after its visibility timeout, finds its
        trigger recorded, and is completed then)."""
        if not messages:
            return True
        try:
            lost = self.queue.complete_many(messages)
        except Exception as e:
            log.error("completing %d processed message(s) failed; they are redelivered and deduplicated: %s",
                      len(messages), e, extra={"messageId": messages[0].id})
            return False
        for message in lost:
            # It took longer than the visibility timeout and someone else holds it now: they will find
            # the trigger recorded and complete it without applying it twice.
            log.warning("message was handed to another receiver before it was completed",
                        extra={"messageId": message.id})
        return True

    def _release_all(self, messages: Sequence[Message]) -> None:
        for message in messages:
            try:
                self.queue.release(message)
            except Exception:
                log.warning("could not release a message on stop; it returns after its timeout")

    def run_once(self) -> int:
        """Receive and process one batch; the number of messages received."""
        messages = self.queue.receive(max_messages=self.batch_size, visibility_timeout=self.visibility_timeout)
        self.process_batch(messages)
        return len(messages)

    def _idle(self, stop: threading.Event) -> None:
        """Nothing to receive: sleep until work may have come. A queue that can tell (SQLite: `wait_for_work`) is
        slept on until a message is sent or released, or a delayed one (a timer) falls due, at most `max_idle`;
        any other is polled every `idle_wait` seconds."""
        wait_for_work = getattr(self.queue, "wait_for_work", None)
        if wait_for_work is None:
            stop.wait(self.idle_wait)
            return
        try:
            wait_for_work(self.max_idle, stop=stop, poll=self.idle_wait)
        except Exception as e:
            log.error("waiting on the command queue failed: %s", e)
            stop.wait(1.0)

    def run(self, stop: threading.Event) -> None:
        """Until `stop` is set. A stop finishes the message at hand; the rest of a received batch is
        released at once so another worker picks it up (nothing waits out a visibility timeout)."""
        while not stop.is_set():
            try:
                messages = self.queue.receive(max_messages=self.batch_size,
                                              visibility_timeout=self.visibility_timeout)
            except Exception as e:
                log.error("receiving from the command queue failed: %s", e)
                stop.wait(1.0)
                continue
            if not messages:
                self._idle(stop)
                continue
            self.process_batch(messages, stop)


def drain_poison_loop(queue: CommandQueue, parked: ParkedCommands, stop: threading.Event, interval: float) -> None:
    """Every `interval` seconds until `stop`: the poison queue's commands of known tenants into their parked stores
    (`ParkedCommands.drain_poison`)."""
    while not stop.wait(interval):
        try:
            moved = parked.drain_poison(queue)
        except Exception as e:
            log.warning("moving poisoned commands to the parked stores failed (tried again later): %s", e)
            continue
        if moved:
            log.info("%d poisoned command(s) moved to their tenants' parked stores", moved)

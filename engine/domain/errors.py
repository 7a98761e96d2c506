"""The error tree of Waymark. Every error names what it concerns.

    WaymarkError
    ├── InvalidDefinition        a workflow definition has problems (all of them listed)
    ├── NotFound
    │   ├── TenantNotFound
    │   ├── WorkflowNotFound
    │   ├── InstanceNotFound
    │   └── TimerNotFound        no pending scheduled trigger or timer with that id
    ├── InstanceAlreadyExists    create with an id that is taken
    ├── ConcurrencyConflict      append with a stale expected version; nothing was written
    ├── DefinitionChanged        a definition upload's expected version (If-Match) is not the latest
    ├── DuplicateTrigger         append of a trigger id already recorded on the instance
    ├── StoreUnavailable         the storage could not be reached; the command stays queued
    ├── CommandTooLarge          a command larger than one message of the command queue can hold
    ├── RecoveryRefused          recover/terminate of an instance it does not apply to (not faulted …)
    ├── SchedulingRefused        schedule or cancel a trigger where that does not apply (a completed instance …)
    ├── MigrationRefused         a migration the target version does not allow (every problem listed)
    ├── InvalidCommand           a command with a wrong field (unknown reset state, sequence out of range)
    └── ExecutionError           a condition or action failed while running (faults the instance)
        └── ExpressionError      a CEL expression failed at run time

The API maps each type to one problem+json status in one place (engine/api/problems.py).
"""

from __future__ import annotations

from dataclasses import dataclass


class WaymarkError(Exception):
    """Base of every error Waymark raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One problem of a definition: where it is (a JSON path) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidDefinition(WaymarkError):
    def __init__(self, workflow_id: str | None, problems: list[Problem]) -> None:
        self.workflow_id = workflow_id
        self.problems = problems
        listing = "; ".join(str(p) for p in problems)
        super().__init__(f"workflow {workflow_id!r} is invalid ({len(problems)} problem(s)): {listing}")


class NotFound(WaymarkError):
    pass


class TenantNotFound(NotFound):
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        super().__init__(f"tenant {tenant!r} does not exist")


class WorkflowNotFound(NotFound):
    def __init__(self, tenant: str, workflow_id: str, version: int | None = None) -> None:
        self.tenant = tenant
        self.workflow_id = workflow_id
        self.version = version
        which = f" version {version}" if version is not None else ""
        super().__init__(f"workflow {workflow_id!r}{which} does not exist in tenant {tenant!r}")


class InstanceNotFound(NotFound):
    def __init__(self, tenant: str, instance_id: str) -> None:
        self.tenant = tenant
        self.instance_id = instance_id
        super().__init__(f"instance {instance_id!r} does not exist in tenant {tenant!r}")


class TimerNotFound(NotFound):
    def __init__(self, tenant: str, instance_id: str, timer_id: str) -> None:
        self.tenant = tenant
        self.instance_id = instance_id
        self.timer_id = timer_id
        super().__init__(f"instance {instance_id!r} in tenant {tenant!r} has no pending scheduled trigger "
                         f"{timer_id!r} (it fired, was cancelled, or was never scheduled)")


class InstanceAlreadyExists(WaymarkError):
    def __init__(self, tenant: str, instance_id: str) -> None:
        self.tenant = tenant
        self.instance_id = instance_id
        super().__init__(f"instance {instance_id!r} already exists in tenant {tenant!r}")


class ConcurrencyConflict(WaymarkError):
    def __init__(self, tenant: str, instance_id: str, expected_version: int, actual_version: int | None, *,
                 detail: str | None = None) -> None:
        self.tenant = tenant
        self.instance_id = instance_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        if detail is None:
            actual = "at another version" if actual_version is None else f"at version {actual_version}"
            detail = f"is {actual}, not the expected {expected_version}"
        super().__init__(f"instance {instance_id!r} in tenant {tenant!r} {detail}; nothing was written")


class DefinitionChanged(WaymarkError):
    """An upload said which version it replaces (`If-Match`), and that is not the latest: nothing was stored."""

    def __init__(self, tenant: str, workflow_id: str, expected_version: int | None, actual_version: int) -> None:
        self.tenant = tenant
        self.workflow_id = workflow_id
        self.expected_version = expected_version
        self.version = actual_version
        expected = "any version" if expected_version is None else (
            "no version yet" if expected_version == 0 else f"version {expected_version}")
        actual = "has no version" if actual_version == 0 else f"is at version {actual_version}"
        super().__init__(f"workflow {workflow_id!r} of tenant {tenant!r} {actual}, not {expected}; nothing was stored")


class DuplicateTrigger(WaymarkError):
    def __init__(self, tenant: str, instance_id: str, trigger_id: str) -> None:
        self.tenant = tenant
        self.instance_id = instance_id
        self.trigger_id = trigger_id
        super().__init__(f"trigger {trigger_id!r} is already recorded on instance {instance_id!r} in tenant {tenant!r}")


class StoreUnavailable(WaymarkError):
    """The storage failed in a way that may pass; the command must stay queued and be retried."""

    def __init__(self, store: str, detail: str) -> None:
        self.store = store
        self.detail = detail
        super().__init__(f"{store} is unavailable: {detail}")


class CommandTooLarge(WaymarkError):
    """A command whose body does not fit in one message of the command queue (Azure Storage: about 47 KiB of JSON,
    below the API's own body limit). Nothing was queued."""

    def __init__(self, queue: str, size: int, limit: int) -> None:
        self.queue = queue
        self.size = size
        self.limit = limit
        super().__init__(f"the command is {size} bytes of JSON; one message of the command queue {queue!r} holds at "
                         f"most {limit}: send a smaller content (e.g. a reference to the data instead of the data)")


class ExecutionError(WaymarkError):
    """A condition or action failed while running. It faults the instance; it never crashes the worker."""

    def __init__(self, where: str, error_type: str, message: str) -> None:
        self.where = where
        self.error_type = error_type
        self.message = message
        super().__init__(f"{where}: {error_type}: {message}")


class ExpressionError(ExecutionError):
    pass


class RecoveryRefused(WaymarkError):
    """A recover or terminate that does not apply to the instance as it is (e.g. it is not faulted)."""

    def __init__(self, tenant: str, instance_id: str, reason: str) -> None:
        self.tenant = tenant
        self.instance_id = instance_id
        self.reason = reason
        super().__init__(f"instance {instance_id!r} in tenant {tenant!r}: {reason}")


class SchedulingRefused(WaymarkError):
    """Scheduling or cancelling a trigger that does not apply to the instance as it is."""

    def __init__(self, tenant: str, instance_id: str, reason: str) -> None:
        self.tenant = tenant
        self.instance_id = instance_id
        self.reason = reason
        super().__init__(f"instance {instance_id!r} in tenant {tenant!r}: {reason}")


class MigrationRefused(WaymarkError):
    """A migration to another version of the workflow that would leave the instance invalid; every reason listed."""

    def __init__(self, tenant: str, instance_id: str, problems: list[Problem]) -> None:
        self.tenant = tenant
        self.instance_id = instance_id
        self.problems = problems
        listing = "; ".join(str(p) for p in problems)
        super().__init__(f"instance {instance_id!r} in tenant {tenant!r} cannot be migrated: {listing}")


class InvalidCommand(WaymarkError):
    """A command whose own fields are wrong (an unknown state, a sequence out of range …)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")

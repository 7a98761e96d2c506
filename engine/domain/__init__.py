"""The pure core of Waymark: definitions, conditions, actions, the instance aggregate and its events.

Nothing here performs I/O or reads the clock: time, ids and the HTTP port come in as arguments.
"""

from engine.domain.builtins import default_registry
from engine.domain.commit import Commit
from engine.domain.creation import decide_create
from engine.domain.decision import Decision, Outcome
from engine.domain.definition import WorkflowDefinition, load_json, mermaid, parse_definition
from engine.domain.errors import (
    CommandTooLarge,
    ConcurrencyConflict,
    DefinitionChanged,
    DuplicateTrigger,
    ExecutionError,
    ExpressionBudgetExceeded,
    ExpressionError,
    InstanceAlreadyExists,
    InstanceNotFound,
    InvalidCommand,
    InvalidDefinition,
    MigrationRefused,
    NotFound,
    Problem,
    RecoveryRefused,
    SchedulingRefused,
    StoreUnavailable,
    TenantNotFound,
    TimerNotFound,
    WaymarkError,
    WorkflowNotFound,
)
from engine.domain.events import Event, EventType, timestamp
from engine.domain.expressions import ExpressionBudget
from engine.domain.extensions import (
    ActionAttempt,
    ActionRetries,
    ContextChange,
    HttpPort,
    HttpRequest,
    HttpResponse,
    HttpTransportError,
    Registry,
    RetryAction,
    Scope,
    Services,
    SpecProblems,
)
from engine.domain.fold import apply, fold
from engine.domain.instance import Fault, Instance, Status, Trigger
from engine.domain.migration import decide_migrate, migration_problems
from engine.domain.recovery import RecoveryMode, decide_recover, decide_terminate
from engine.domain.scheduling import (
    MAX_SCHEDULED,
    decide_cancel,
    decide_fire,
    decide_schedule,
    decide_stale_firing,
    scheduling_id,
)
from engine.domain.secrets import REDACTED, SecretSlot, redacted, replace_secrets, secret_slots
from engine.domain.timers import PendingTimer, firing_id, parse_duration, parse_time
from engine.domain.triggering import VERSION_MISMATCH, decide_trigger, is_version_mismatch

__all__ = [
    "MAX_SCHEDULED",
    "REDACTED",
    "VERSION_MISMATCH",
    "ActionAttempt",
    "ActionRetries",
    "CommandTooLarge",
    "Commit",
    "ConcurrencyConflict",
    "ContextChange",
    "Decision",
    "DefinitionChanged",
    "DuplicateTrigger",
    "Event",
    "EventType",
    "ExecutionError",
    "ExpressionBudget",
    "ExpressionBudgetExceeded",
    "ExpressionError",
    "Fault",
    "HttpPort",
    "HttpRequest",
    "HttpResponse",
    "HttpTransportError",
    "Instance",
    "InstanceAlreadyExists",
    "InstanceNotFound",
    "InvalidCommand",
    "InvalidDefinition",
    "MigrationRefused",
    "NotFound",
    "Outcome",
    "PendingTimer",
    "Problem",
    "RecoveryMode",
    "RecoveryRefused",
    "Registry",
    "RetryAction",
    "SchedulingRefused",
    "Scope",
    "SecretSlot",
    "Services",
    "SpecProblems",
    "Status",
    "StoreUnavailable",
    "TenantNotFound",
    "TimerNotFound",
    "Trigger",
    "WaymarkError",
    "WorkflowDefinition",
    "WorkflowNotFound",
    "apply",
    "decide_cancel",
    "decide_create",
    "decide_fire",
    "decide_migrate",
    "decide_recover",
    "decide_schedule",
    "decide_stale_firing",
    "decide_terminate",
    "decide_trigger",
    "default_registry",
    "firing_id",
    "fold",
    "is_version_mismatch",
    "load_json",
    "mermaid",
    "migration_problems",
    "parse_definition",
    "parse_duration",
    "parse_time",
    "redacted",
    "replace_secrets",
    "scheduling_id",
    "secret_slots",
    "timestamp",
]

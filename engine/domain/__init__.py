"""The pure core of Waymark: definitions, conditions, actions, the instance aggregate and its events.

Nothing here performs I/O or reads the clock: time, ids and the HTTP port come in as arguments.
"""

from engine.domain.builtins import default_registry
from engine.domain.definition import WorkflowDefinition, load_json, mermaid, parse_definition
from engine.domain.errors import (
    CommandTooLarge,
    ConcurrencyConflict,
    DuplicateTrigger,
    ExecutionError,
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
from engine.domain.events import Commit, Event, EventType, timestamp
from engine.domain.extensions import (
    ContextChange,
    HttpPort,
    HttpRequest,
    HttpResponse,
    HttpTransportError,
    Registry,
    Scope,
    Services,
    SpecProblems,
)
from engine.domain.instance import (
    Decision,
    Fault,
    Instance,
    Outcome,
    RecoveryMode,
    Status,
    Trigger,
    apply,
    decide_create,
    decide_recover,
    decide_terminate,
    decide_trigger,
    fold,
)
from engine.domain.migration import decide_migrate, migration_problems
from engine.domain.scheduling import (
    MAX_SCHEDULED,
    decide_cancel,
    decide_fire,
    decide_schedule,
    decide_stale_firing,
    scheduling_id,
)
from engine.domain.timers import PendingTimer, firing_id, parse_duration, parse_time

__all__ = [
    "MAX_SCHEDULED", "CommandTooLarge", "Commit", "ConcurrencyConflict", "ContextChange", "Decision",
    "DuplicateTrigger", "Event", "EventType", "ExecutionError", "ExpressionError", "Fault", "HttpPort", "HttpRequest",
    "HttpResponse", "HttpTransportError", "Instance", "InstanceAlreadyExists", "InstanceNotFound", "InvalidCommand",
    "InvalidDefinition", "MigrationRefused", "NotFound", "Outcome", "PendingTimer", "Problem", "RecoveryMode",
    "RecoveryRefused", "Registry", "SchedulingRefused", "Scope", "Services", "SpecProblems", "Status",
    "StoreUnavailable", "TenantNotFound", "TimerNotFound", "Trigger", "WaymarkError", "WorkflowDefinition",
    "WorkflowNotFound", "apply", "decide_cancel", "decide_create", "decide_fire", "decide_migrate", "decide_recover",
    "decide_schedule", "decide_stale_firing", "decide_terminate", "decide_trigger", "default_registry", "firing_id",
    "fold", "load_json", "mermaid", "migration_problems", "parse_definition", "parse_duration", "parse_time",
    "scheduling_id", "timestamp",
]

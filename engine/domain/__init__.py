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
    ExpressionBudgetExceeded,
    ExpressionError,
    InstanceAlreadyExists,
    InstanceNotFound,
    InvalidCommand,
    InvalidDefinition,
    NotFound,
    Problem,
    RecoveryRefused,
    StoreUnavailable,
    TenantNotFound,
    WaymarkError,
    WorkflowNotFound,
)
from engine.domain.events import Commit, Event, EventType, timestamp
from engine.domain.expressions import ExpressionBudget
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

__all__ = [
    "CommandTooLarge", "Commit", "ConcurrencyConflict", "ContextChange", "Decision", "DuplicateTrigger", "Event",
    "EventType",
    "ExecutionError", "ExpressionBudget", "ExpressionBudgetExceeded", "ExpressionError",
    "Fault", "HttpPort", "HttpRequest", "HttpResponse", "HttpTransportError",
    "Instance", "InstanceAlreadyExists", "InstanceNotFound", "InvalidCommand", "InvalidDefinition", "NotFound",
    "Outcome", "Problem", "RecoveryMode", "RecoveryRefused", "Registry", "Scope", "Services", "SpecProblems",
    "Status", "StoreUnavailable", "TenantNotFound", "Trigger", "WaymarkError", "WorkflowDefinition",
    "WorkflowNotFound", "apply", "decide_create", "decide_recover", "decide_terminate", "decide_trigger",
    "default_registry", "fold", "load_json", "mermaid", "parse_definition", "timestamp",
]

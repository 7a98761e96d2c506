"""Interests that follow the state (Marain.Workflow's rule).

An instance's interests are the subjects a broadcast trigger reaches it by. They are recomputed on every change
of state, from three parts:

- the instance's own id, always (a broadcast to one instance's id reaches it, as in Marain);
- the interests given when it was created (`POST …/instances` `interests`), kept while it lives;
- its current state's `interests`: literal subjects, or CEL expressions over `context` and `instance` giving a
  subject, a list of subjects, or null (none) — evaluated with the context as it is once the state is entered.

An instance that is Complete or Terminated has none: a broadcast never reaches a finished instance (no
`TriggerRejected` piling up in its history). A Faulted instance keeps them (it rejects triggers until it is
recovered; a recovery recomputes them). An interest expression that fails faults the instance, like an action.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.domain.errors import ExecutionError
from engine.domain.expressions import CompileError, Expression
from engine.domain.extensions import Scope

__all__ = ["MAX_INTERESTS", "MAX_SUBJECT_LENGTH", "Interest", "interests_of", "parse_interests"]

MAX_INTERESTS = 100  # of a state's declaration, and of what its expressions may add
MAX_SUBJECT_LENGTH = 200


@dataclass(frozen=True)
class Interest:
    """A literal subject, or a CEL expression giving subjects. `where` is its JSON path in the definition."""

    where: str
    subject: str | None = None
    expression: Expression | None = None


def parse_interests(raw: Any, path: str, problem: Any) -> tuple[Interest, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problem(path, "must be a list of subjects (strings) or {\"expression\": CEL}")
        return ()
    if len(raw) > MAX_INTERESTS:
        problem(path, f"has {len(raw)} items; at most {MAX_INTERESTS} are allowed")
        return ()
    parsed = []
    for index, item in enumerate(raw):
        where = f"{path}[{index}]"
        if isinstance(item, str) and 0 < len(item) <= MAX_SUBJECT_LENGTH:
            parsed.append(Interest(where, subject=item))
        elif isinstance(item, dict) and set(item) == {"expression"}:
            try:
                parsed.append(Interest(where, expression=Expression(item["expression"])))
            except CompileError as e:
                problem(f"{where}.expression", f"does not compile: {e}")
        else:
            problem(where, f"must be a subject (1 to {MAX_SUBJECT_LENGTH} characters) or {{\"expression\": CEL}}")
    return tuple(parsed)


def interests_of(instance_id: str, given: Iterable[str], declared: Iterable[Interest], scope: Scope) -> tuple[str, ...]:
    """The instance id, the given interests and what the state declares, sorted and without duplicates. Raises
    ExecutionError when an expression fails or gives something that is not a subject."""
    subjects = {instance_id, *given}
    for interest in declared:
        if interest.subject is not None:
            subjects.add(interest.subject)
        elif interest.expression is not None:
            subjects.update(_evaluated(interest, scope))
    return tuple(sorted(subjects))


def _evaluated(interest: Interest, scope: Scope) -> list[str]:
    assert interest.expression is not None
    value: Any = scope.evaluate(interest.expression, f"{interest.where}.expression")
    values = [] if value is None else value if isinstance(value, list | tuple) else [value]
    if len(values) > MAX_INTERESTS or not all(isinstance(v, str) and 0 < len(v) <= MAX_SUBJECT_LENGTH
                                              for v in values):
        shown = value if not isinstance(value, Mapping) else "a map"
        raise ExecutionError(interest.where, "TypeMismatch",
                             f"an interest expression gives a subject (a string of 1 to {MAX_SUBJECT_LENGTH} "
                             f"characters), a list of at most {MAX_INTERESTS} of them, or null; "
                             f"`{interest.expression.source}` gave {str(shown)[:100]}")
    return list(values)

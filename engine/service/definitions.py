"""Workflow definitions as the engine uses them: validated on upload, parsed once per version, cached.

Secrets in a definition (engine/domain/secrets.py: webhook subscription secrets, `http` header values) are sealed
before the store sees them and opened when a version is parsed, so the store holds no secret in the clear and
the engine runs with the real values. What is shown (`document`) has each secret as "***". An upload that sends
"***" back for a secret keeps the latest version's secret at the same place, when it goes to the same destination
(as Azure's APIs keep a secret a GET showed redacted); anywhere else "***" is a problem of the upload.
"""

from __future__ import annotations

import builtins
import contextlib
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from engine.domain import (
    REDACTED,
    InvalidDefinition,
    Problem,
    Registry,
    SecretSlot,
    WorkflowDefinition,
    WorkflowNotFound,
    default_registry,
    parse_definition,
    redacted,
    replace_secrets,
    secret_slots,
)
from engine.schemas import MAX_PROBLEMS, definition_problems
from engine.stores.base import DefinitionStore

__all__ = ["DefinitionCatalog", "SecretSealer", "validate_definition"]


class SecretSealer(Protocol):
    """What seals secrets at rest (engine/tenants/sealing.py `Sealer`)."""

    def seal_text(self, text: str) -> str: ...

    def open_text(self, value: str) -> str: ...


def validate_definition(document: Any, registry: Registry, *, version: int = 0) -> WorkflowDefinition:
    """The definition, or InvalidDefinition listing every problem: first the published schema's (unknown keys,
    shapes), then the parser's (references, reachability, CEL), without saying the same thing twice."""
    shape = definition_problems(document, registry)
    try:
        definition = parse_definition(document, registry, version=version)
    except InvalidDefinition as e:
        meaning = [p for p in e.problems if not any(_within(p.path, s.path) for s in shape)]
        raise InvalidDefinition(e.workflow_id, (shape + meaning)[:MAX_PROBLEMS]) from None
    if shape:
        raise InvalidDefinition(definition.id, shape)
    return definition


def _within(path: str, outer: str) -> bool:
    return path == outer or path.startswith((outer + ".", outer + "["))


class DefinitionCatalog:
    """Parses each (tenant, workflow, version) once: CEL is compiled per definition version, never per trigger.
    `sealer`: seals the definitions' secrets at rest (None: they are stored as they are)."""

    def __init__(self, store: DefinitionStore, *, registry: Registry | None = None,
                 sealer: SecretSealer | None = None) -> None:
        self.store = store
        self.registry = registry or default_registry()
        self.sealer = sealer
        self._parsed: dict[tuple[str, str, int], WorkflowDefinition] = {}
        self._lock = threading.Lock()

    def validate(self, document: Mapping[str, Any]) -> WorkflowDefinition:
        """Raises InvalidDefinition listing every problem."""
        return validate_definition(document, self.registry)

    def put(self, tenant: str, document: Mapping[str, Any], *,
            expected_version: int | None = None) -> WorkflowDefinition:
        """Store a new version (secrets sealed). Raises InvalidDefinition listing every problem, those of a "***"
        with no secret to keep among them. With `expected_version`, only if that is the latest version (0: none
        yet), else DefinitionChanged."""
        workflow_id = str(document.get("id", ""))
        complete, problems = self._kept_secrets(tenant, workflow_id, document)
        try:
            self.validate(complete)  # nothing invalid is ever stored
        except InvalidDefinition as e:
            raise InvalidDefinition(workflow_id, problems + e.problems) from None
        if problems:
            raise InvalidDefinition(workflow_id, problems)
        stored = {key: value for key, value in complete.items() if key != "version"}
        sealer = self.sealer
        if sealer is not None:
            stored = replace_secrets(stored, lambda slot: sealer.seal_text(slot.value))
        version = self.store.put(tenant, stored, expected_version=expected_version)
        return self.get(tenant, workflow_id, version)

    def get(self, tenant: str, workflow_id: str, version: int | None = None) -> WorkflowDefinition:
        if version is not None:
            cached = self._parsed.get((tenant, workflow_id, version))
            if cached is not None:
                return cached
        found_version, document = self.store.get(tenant, workflow_id, version)
        key = (tenant, workflow_id, found_version)
        cached = self._parsed.get(key)
        if cached is None:
            cached = parse_definition(self._opened(document), self.registry, version=found_version)
            with self._lock:
                self._parsed[key] = cached
        return cached

    def document(self, tenant: str, workflow_id: str, version: int | None = None) -> tuple[int, dict[str, Any]]:
        """A stored version as it may be shown (`GET …/workflows/{id}`): every secret "***"."""
        found_version, document = self.store.get(tenant, workflow_id, version)
        return found_version, redacted(document)

    def list(self, tenant: str) -> list[tuple[str, int]]:
        return self.store.list(tenant)

    def _opened(self, document: Mapping[str, Any]) -> Mapping[str, Any]:
        sealer = self.sealer
        if sealer is None or not secret_slots(document):
            return document
        return replace_secrets(document, lambda slot: sealer.open_text(slot.value))

    def _kept_secrets(self, tenant: str, workflow_id: str,
                      document: Mapping[str, Any]) -> tuple[Mapping[str, Any], builtins.list[Problem]]:
        """`document` with each "***" replaced by the latest version's secret at that place, and the problems of
        those that have none to keep."""
        if not any(slot.value == REDACTED for slot in secret_slots(document)):
            return document, []
        latest: Mapping[str, Any] = {}
        if workflow_id:
            with contextlib.suppress(WorkflowNotFound):
                _, latest = self.store.get(tenant, workflow_id, None)
        earlier = {slot.path: slot for slot in secret_slots(latest)}
        problems: builtins.list[Problem] = []

        def keep(slot: SecretSlot) -> str:
            if slot.value != REDACTED:
                return slot.value
            before = earlier.get(slot.path)
            if before is None or before.value == REDACTED or before.destination != slot.destination:
                problems.append(Problem(slot.path, f'is "{REDACTED}" (a secret shown redacted), but the latest '
                                                   "version has no secret here for the same destination to keep: "
                                                   "send the value"))
                return slot.value
            return self.sealer.open_text(before.value) if self.sealer is not None else before.value

        return replace_secrets(document, keep), problems

"""Workflow definitions as the engine uses them: validated on upload, parsed once per version, cached."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from engine.domain import InvalidDefinition, Registry, WorkflowDefinition, default_registry, parse_definition
from engine.schemas import MAX_PROBLEMS, definition_problems
from engine.stores.base import DefinitionStore


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
    """Parses each (tenant, workflow, version) once: CEL is compiled per definition version, never per trigger."""

    def __init__(self, store: DefinitionStore, *, registry: Registry | None = None) -> None:
        self.store = store
        self.registry = registry or default_registry()
        self._parsed: dict[tuple[str, str, int], WorkflowDefinition] = {}
        self._lock = threading.Lock()

    def validate(self, document: Mapping[str, Any]) -> WorkflowDefinition:
        """Raises InvalidDefinition listing every problem."""
        return validate_definition(document, self.registry)

    def put(self, tenant: str, document: Mapping[str, Any]) -> WorkflowDefinition:
        self.validate(document)  # nothing invalid is ever stored
        stored = {key: value for key, value in document.items() if key != "version"}
        version = self.store.put(tenant, stored)
        return self.get(tenant, str(document["id"]), version)

    def get(self, tenant: str, workflow_id: str, version: int | None = None) -> WorkflowDefinition:
        if version is not None:
            cached = self._parsed.get((tenant, workflow_id, version))
            if cached is not None:
                return cached
        found_version, document = self.store.get(tenant, workflow_id, version)
        key = (tenant, workflow_id, found_version)
        cached = self._parsed.get(key)
        if cached is None:
            cached = parse_definition(document, self.registry, version=found_version)
            with self._lock:
                self._parsed[key] = cached
        return cached

    def list(self, tenant: str) -> list[tuple[str, int]]:
        return self.store.list(tenant)

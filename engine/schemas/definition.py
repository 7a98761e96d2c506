"""The published JSON Schema of workflow definitions, and upload validation against it.

`workflow-definition.json` beside this module is the one source of the definition's wire shape: the server
serves it at `/schemas/workflow-definition.json`, the OpenAPI document embeds it as the body of
`PUT …/workflows/{w}`, and `definition_problems` checks every upload with it before the domain's parser looks
at what the shape cannot say (targets that exist, reachability, duplicate ids, CEL that compiles and is boolean).
Condition and action types registered from Python are added to it (`definition_schema(registry)`).
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from engine.domain import Problem, Registry

__all__ = ["MAX_PROBLEMS", "definition_problems", "definition_schema", "json_path", "load"]

# The most problems one upload is told about: a document of 1,000 broken states need not produce a 1 MB answer.
MAX_PROBLEMS = 200


def load(name: str) -> dict[str, Any]:
    """A schema file of this package, parsed (a fresh copy: callers may change it)."""
    return copy.deepcopy(_parsed(name))


@functools.cache
def _parsed(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))
    return result


def definition_schema(registry: Registry | None = None) -> dict[str, Any]:
    """The definition schema, with the condition and action types `registry` adds to the built-in ones."""
    schema = load("workflow-definition.json")
    if registry is not None:
        defs = schema["$defs"]
        _add_types(defs, "Condition", registry.condition_schemas)
        _add_types(defs, "Action", registry.action_schemas)
    return schema


def _add_types(defs: dict[str, Any], kind: str, registered: Mapping[str, Mapping[str, Any] | None]) -> None:
    known: list[str] = defs[kind]["properties"]["type"]["enum"]
    for name, spec_schema in registered.items():
        if name in known:
            continue
        known.append(name)
        then = dict(spec_schema) if spec_schema is not None else {
            "type": "object", "description": f"A {kind.lower()} type registered from Python; its factory checks it."}
        defs[kind]["allOf"].append(
            {"if": {"required": ["type"], "properties": {"type": {"const": name}}}, "then": then})


@functools.lru_cache(maxsize=16)
def _validator(schema_text: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_text))


def validator_for(registry: Registry | None = None) -> Draft202012Validator:
    """A compiled validator (cached per distinct schema: registries with the same types share one)."""
    return _validator(json.dumps(definition_schema(registry), sort_keys=True))


def definition_problems(document: Any, registry: Registry | None = None) -> list[Problem]:
    """Every way `document` departs from the schema, each with its JSON path and what to do about it."""
    problems: list[Problem] = []
    for error in validator_for(registry).iter_errors(document):
        problems.extend(_explain(error))
        if len(problems) >= MAX_PROBLEMS:
            break
    return _unique(problems)[:MAX_PROBLEMS]


def json_path(parts: Iterable[Any]) -> str:
    """`$`, then `.key` or `[index]` per step: the path form every definition problem uses."""
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _explain(error: ValidationError) -> list[Problem]:
    path = json_path(error.absolute_path)
    if "propertyNames" in error.relative_schema_path:  # the key itself is wrong: point at it
        path = f"{path}.{error.instance}"
    schema = error.schema if isinstance(error.schema, dict) else {}
    match error.validator:
        case "additionalProperties" if isinstance(error.instance, dict):
            allowed = list(schema.get("properties", {}))
            return [Problem(f"{path}.{key}", _unknown_key(key, allowed))
                    for key in error.instance if key not in allowed]
        case "required":
            missing = error.message.split("'")[1] if "'" in error.message else str(error.validator_value)
            return [Problem(f"{path}.{missing}", "is required")]
        case "anyOf" | "oneOf" if isinstance(schema.get("errorMessage"), str):
            return [Problem(path, schema["errorMessage"])]  # the ajv-errors convention: the schema says it best
        case "if" | "allOf" | "oneOf" | "anyOf" if error.context:
            # A branch chosen by `type` (if/then) reports its own errors; for oneOf the closest branch speaks.
            best = sorted(error.context, key=lambda e: (len(e.absolute_path), -len(e.context or [])))
            return _explain(best[-1]) if error.validator != "if" else [p for e in best for p in _explain(e)]
    return [Problem(path, _message(error, schema))]


def _unknown_key(key: str, allowed: Sequence[str]) -> str:
    lowered = {name.lower(): name for name in allowed}
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    hint = f"did you mean `{lowered[close[0]]}`?" if close else f"known here: {', '.join(sorted(allowed))}"
    return f"is not a known key ({hint}); data of your own goes under `metadata`"


def _message(error: ValidationError, schema: Mapping[str, Any]) -> str:
    value = error.validator_value
    match error.validator:
        case "type":
            return f"must be {_a(value)}"
        case "enum":
            return f"is {error.instance!r}; known: {', '.join(str(v) for v in _upper_only(value))}"
        case "const":
            return f"must be {value!r}"
        case "pattern":
            described = str(schema.get("description") or "").rstrip(".")
            return f"must be {described[0].lower()}{described[1:]}" if described else f"must match {value}"
        case "minLength":
            return "must not be empty" if value == 1 else f"must be at least {value} characters"
        case "maxLength":
            return f"is {len(error.instance)} characters long; at most {value} are allowed"
        case "maxItems":
            return f"has {len(error.instance)} items; at most {value} are allowed"
        case "minProperties":
            return "must not be empty" if value == 1 else f"needs at least {value} entries"
        case "maxProperties":
            return f"has {len(error.instance)} entries; at most {value} are allowed"
        case "minimum" | "maximum":
            low, high = schema.get("minimum"), schema.get("maximum")
            return f"must be a number from {low:g} to {high:g}" if low is not None and high is not None \
                else f"must be {'at least' if error.validator == 'minimum' else 'at most'} {value}"
    return error.message


def _a(type_name: Any) -> str:
    names = type_name if isinstance(type_name, list) else [type_name]
    article = {"object": "an object", "array": "a list", "integer": "an integer"}
    return " or ".join(article.get(str(n), f"a {n}") for n in names)


def _upper_only(values: Sequence[Any]) -> list[Any]:
    """An enum's values without the lower-case spellings it also accepts (`GET`, not `GET, get`)."""
    return [v for v in values if not (isinstance(v, str) and v.islower() and v.upper() in values)]


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    result = []
    for problem in problems:
        if (problem.path, problem.message) not in seen:
            seen.add((problem.path, problem.message))
            result.append(problem)
    return result

"""Conditional uploads of a definition (RFC 9110 §13): the version an editor read is its `ETag`, and `PUT` with
`If-Match: "<version>"` stores a new version only if that is still the latest (else `412`), so two editors cannot
overwrite each other unknowingly. `If-Match: *` asks that the workflow exist; `If-None-Match: *` that it not.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.api.problems import ApiProblem

__all__ = ["Precondition", "precondition"]

MAX_VERSION = 2**31


@dataclass(frozen=True)
class Precondition:
    expected_version: int | None = None  # the latest version must be this one (0: there is none yet)
    must_exist: bool = False  # `If-Match: *`


def precondition(if_match: str | None, if_none_match: str | None) -> Precondition:
    if if_match is not None and if_none_match is not None:
        raise _invalid("send If-Match or If-None-Match, not both")
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise _invalid("on an upload, If-None-Match can only be `*` (create the workflow, never replace it)")
        return Precondition(expected_version=0)
    if if_match is None:
        return Precondition()
    tag = if_match.strip()
    if tag == "*":
        return Precondition(must_exist=True)
    if not (len(tag) > 2 and tag[0] == tag[-1] == '"' and tag[1:-1].isdigit() and int(tag[1:-1]) <= MAX_VERSION):
        raise _invalid(f'If-Match must be one version in quotes, as the definition\'s ETag (e.g. "3"), or `*`; not '
                       f"{if_match[:40]!r}")
    return Precondition(expected_version=int(tag[1:-1]))


def _invalid(detail: str) -> ApiProblem:
    return ApiProblem(400, "Invalid precondition", detail, slug="invalid-precondition")

"""Small Markdown writers shared by the generated pages."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["cell", "code", "table", "value"]


def cell(text: str | None) -> str:
    """Text fit for one table cell: one line, `|` escaped."""
    if not text:
        return ""
    return re.sub(r"\s*\n\s*", " ", text.strip()).replace("|", "\\|")


def code(text: str) -> str:
    """Inline code that survives backticks inside."""
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|")


def value(data: Any) -> str:
    """A default or constant as inline code: JSON for data, the plain text for a string."""
    if data == "":
        return "(empty)"
    if isinstance(data, float) and data.is_integer():
        data = int(data)
    return code(data if isinstance(data, str) else json.dumps(data, ensure_ascii=False))


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"

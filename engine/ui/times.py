"""How times read on the dashboard: `2025-01-01 12:00:00 UTC` at a glance, the stored value on hover, and how long
until a timer is due."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from markupsafe import Markup, escape

from engine.domain import parse_time

__all__ = ["time_element", "until", "when", "with_times"]

ISO_TIME = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z\b")


def when(at: object) -> str:
    """An event time to read at a glance: `2025-01-01 12:00:00 UTC` (the exact one is in the `datetime`)."""
    text = str(at or "")
    if len(text) >= 19 and text[10] == "T" and text.endswith("Z"):
        return f"{text[:10]} {text[11:19]} UTC"
    return text


def until(due_at: object, now: datetime | None = None) -> str:
    """How long until a timer is due, to read at a glance: `in 2 d 4 h`, `in 5 min`, `in 12 s`, `overdue by 3 s`."""
    try:
        due = parse_time(str(due_at))
    except ValueError:
        return str(due_at)
    seconds = (due - (now or datetime.now(UTC))).total_seconds()
    ahead = seconds >= 0
    left = abs(seconds)
    units = [("d", 86400), ("h", 3600), ("min", 60), ("s", 1)]
    parts: list[str] = []
    for name, size in units:
        if left >= size or (name == "s" and not parts):
            count = int(left // size)
            left -= count * size
            parts.append(f"{count} {name}")
        if len(parts) == 2:
            break
    text = " ".join(parts)
    return f"in {text}" if ahead else f"overdue by {text}"


def time_element(at: object) -> Markup:
    """Every time on the dashboard: `2025-01-01 12:00:00 UTC`, with the stored value (to the microsecond) in the
    element's `datetime` and shown on hover (`title`)."""
    text = str(at or "")
    return Markup('<time datetime="{0}" title="{0}">{1}</time>').format(text, when(text))


def with_times(text: object) -> Markup:
    """A sentence (the explanation's) with each stored time in it shown as `time_element` does. The text is
    escaped first; what is put back in matched digits and `-:.TZ` only."""
    return Markup(ISO_TIME.sub(lambda found: str(time_element(found.group(0))), str(escape(str(text)))))

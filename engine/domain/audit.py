"""What an ignored or rejected trigger's event keeps of the trigger: its content, within a bound.

The audit question "what did we receive, and why did it change nothing?" is answered from the history alone: a
`TriggerIgnored` or `TriggerRejected` event keeps the trigger's topic, the reason and its content. Content whose
JSON is larger than the bound (`Services.audit_content_limit`, the `WAYMARK_AUDIT_CONTENT_BYTES` setting) is kept
as its SHA-256 digest and its size instead, so a tenant cannot grow the history without limit by sending large
triggers that change nothing, and the content can still be matched against a copy kept elsewhere.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["audited_content", "canonical_json"]


def canonical_json(value: Any) -> bytes:
    """The JSON the digest is taken over: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def audited_content(content: Any, limit: int) -> dict[str, Any]:
    """`{"content": …}` when its JSON is at most `limit` bytes, else `{"contentDigest": "sha256:…",
    "contentSize": n}`."""
    encoded = canonical_json(content)
    if len(encoded) <= limit:
        return {"content": content}
    return {"contentDigest": "sha256:" + hashlib.sha256(encoded).hexdigest(), "contentSize": len(encoded)}

"""Azure Functions host (Python v2 programming model).

Placeholder until the Functions issue: it defines the one app object so the host (and the tests) can
import it. HTTP, queue and timer functions are wired here with no business logic of their own.
"""

from __future__ import annotations

import azure.functions as func

app = func.FunctionApp()

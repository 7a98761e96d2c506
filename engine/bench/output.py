"""Where the benchmarks print their tables: a console of their own, so that this package needs nothing from the
CLI that runs it (engine/cli/bench.py)."""

from rich.console import Console

console = Console()

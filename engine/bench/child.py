"""The helper processes some benchmarks start (a webhook receiver in a process of its own, so it never competes
with the engine for the GIL): how one is ended."""

from __future__ import annotations

import subprocess


def end_child(process: subprocess.Popen[str]) -> None:
    """Close its stdin (a child serves until it closes), wait a little, kill it if it is still there."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()

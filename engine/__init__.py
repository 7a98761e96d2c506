"""Waymark: an event-sourced workflow engine with a CloudEvents change feed."""

__version__ = "0.1.0"

"""Command queue adapters (memory, sqlite, azure storage)."""

"""Storage adapters: event stores and definition stores (memory, sqlite, cosmos)."""

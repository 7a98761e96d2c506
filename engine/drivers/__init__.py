"""What the adapters of several ports share about one driver, below them all: sqlite.py (a tenant's files, how
every SQLite file is synced, rollback) and cosmos.py (the account's client, where a tenant's data lives, a request
counter). Nothing here knows a port."""

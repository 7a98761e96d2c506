"""The hosts: composition roots that build the adapters, the engine, the change feed and the app from settings.

    settings.py         `Settings`: every WAYMARK_* setting of `waymark serve` and the CLI
    runtime.py          the embedded engines (a data directory on SQLite, or memory)
    local.py            the local host: `waymark serve` and `waymark worker` (engine/cli runs them)
    worker.py           the local queue workers (`WorkerPool`) and a worker process of its own
    azure_settings.py   `AzureSettings`: the Functions app's settings
    azure.py            the Azure host: what function_app.py runs
    observability.py    structured logs and OpenTelemetry traces, the same under both hosts
"""

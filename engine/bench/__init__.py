"""The benchmarks behind `waymark bench` (engine/cli/bench.py wires the commands): each measures Waymark beside a
baseline doing the same work under the same settings, in one run, and prints what it leaves out.

    engine.py, engine_work.py     `bench engine`: the worker's path on SQLite beside raw SQLite and pyeventsourcing
    cosmos.py, cosmos_work.py     `bench cosmos`: requests per trigger on a local cosmosdb-server (cosmos_server.py)
    http.py                       `bench http`: accepting a trigger over HTTP beside an empty endpoint
    feed.py                       `bench feed`: the change feed's latency and throughput to a real receiver
    isolation.py                  `bench isolation`: one tenant's latency alone and beside a hostile one
"""

"""Each package says in its __init__ what others may use (STYLE 7). (What each may import: test_layers.py.)"""

import engine.domain


def test_the_domain_exports_what_it_declares() -> None:
    for name in engine.domain.__all__:
        assert hasattr(engine.domain, name), name
    assert {"Instance", "Event", "Commit", "decide_trigger", "decide_create", "decide_recover", "decide_terminate",
            "parse_definition", "fold", "ConcurrencyConflict", "Registry"} <= set(engine.domain.__all__)

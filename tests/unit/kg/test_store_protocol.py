"""The GraphStore protocol is the whole contract: both backends implement every
method of it, and callers use nothing else."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from kgrag.graph.falkordb_store import FalkorDBStore
from kgrag.graph.neo4j_store import Neo4jStore
from kgrag.graph.store import GraphStore

ROOT = Path(__file__).resolve().parents[3]
BUILDERS = {"from_settings", "from_server"}


def _protocol_methods() -> set[str]:
    return {n for n, v in vars(GraphStore).items() if callable(v) and not n.startswith("_")}


def _public(cls) -> set[str]:
    return {n for n, v in inspect.getmembers(cls, callable) if not n.startswith("_")} - BUILDERS


def test_backends_implement_the_whole_protocol():
    want = _protocol_methods()
    assert {"set_meta", "get_meta", "status", "pipeline", "causal_scores"} <= want
    for cls in (FalkorDBStore, Neo4jStore):
        assert want <= _public(cls), f"{cls.__name__} lacks {sorted(want - _public(cls))}"


def test_backends_add_no_public_method_outside_the_protocol():
    want = _protocol_methods()
    for cls in (FalkorDBStore, Neo4jStore):
        assert _public(cls) - want == set(), f"{cls.__name__}: {sorted(_public(cls) - want)} not in GraphStore"


def test_callers_use_only_protocol_methods():
    want = _protocol_methods()
    used: set[str] = set()
    for p in (ROOT / "kgrag").rglob("*.py"):
        if p.parts[-2] == "graph":
            continue
        used |= set(re.findall(r"\bstore\.([a-z][a-z_]*)\(", p.read_text("utf-8")))
    assert used and used - want == set(), f"callers use {sorted(used - want)} outside GraphStore"

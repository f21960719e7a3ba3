"""The one entry point that opens a graph store from settings."""

from __future__ import annotations

from typing import Any

from kgrag.graph.store import GraphStore


def open_store(settings: Any) -> GraphStore:
    """Open the configured backend (starting the embedded FalkorDB on demand)."""
    backend = settings.graph.backend
    if backend == "neo4j":
        from kgrag.graph.neo4j_store import Neo4jStore

        store: GraphStore = Neo4jStore.from_settings(settings)
    else:
        from kgrag.graph.falkordb_store import FalkorDBStore

        store = FalkorDBStore.from_settings(settings)
    store.ensure_schema()
    return store

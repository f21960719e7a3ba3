"""The contract on Neo4j: runs when KGRAG_TEST_NEO4J_URI points at a server."""

import os

import pytest

from tests.contract.graph_store_contract import GraphStoreContract

pytestmark = [
    pytest.mark.neo4j,
    pytest.mark.skipif(not os.environ.get("KGRAG_TEST_NEO4J_URI"), reason="KGRAG_TEST_NEO4J_URI is not set"),
]


def _settings():
    from kgrag.config import load_settings

    return load_settings(
        None,
        graph={"backend": "neo4j"},
        neo4j={
            "uri": os.environ["KGRAG_TEST_NEO4J_URI"],
            "user": os.environ.get("KGRAG_TEST_NEO4J_USER", "neo4j"),
            "password": os.environ.get("KGRAG_TEST_NEO4J_PASSWORD", ""),
            "database": os.environ.get("KGRAG_TEST_NEO4J_DATABASE") or None,
        },
    )


class TestNeo4jStore(GraphStoreContract):
    @pytest.fixture
    def store(self):
        from kgrag.graph.neo4j_store import Neo4jStore

        s = Neo4jStore.from_settings(_settings())
        s.drop()
        s.ensure_schema()
        yield s
        s.drop()
        s.close()

    @pytest.fixture
    def store_factory(self, store):
        """One database: each store it makes is the same server, dropped and fresh, so an
        export → import round trip only passes if the import really rebuilt the graph."""

        def make():
            store.drop()
            store.ensure_schema()
            assert store.counts()["concepts"] == 0 and store.counts()["edges"] == 0
            return store

        return make

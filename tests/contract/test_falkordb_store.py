import uuid

import pytest

from tests.contract.graph_store_contract import GraphStoreContract


class TestFalkorDBStore(GraphStoreContract):
    @pytest.fixture
    def store(self, falkordb_store):
        return falkordb_store

    @pytest.fixture
    def store_factory(self, falkordb_server):
        from kgrag.kg.falkordb_store import FalkorDBStore

        made = []

        def make():
            s = FalkorDBStore.from_server(falkordb_server, "t_" + uuid.uuid4().hex[:12])
            s.ensure_schema()
            made.append(s)
            return s

        yield make
        for s in made:
            s.drop()
            s.close()

    def test_schema_is_idempotent_and_unique(self, store):
        store.ensure_schema()
        store.ensure_schema()
        store.upsert_concepts([{"id": "a", "role": "Finding"}])
        from kgrag.errors import CypherError

        with pytest.raises(CypherError):
            store._execute("raw", "CREATE (:Concept {id: 'a'})", {})

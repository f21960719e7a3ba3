import uuid

import pytest

from tests.contract.graph_store_contract import GraphStoreContract


class TestFalkorDBStore(GraphStoreContract):
    @pytest.fixture
    def store(self, falkordb_store):
        return falkordb_store

    @pytest.fixture
    def store_factory(self, falkordb_server):
        from kgrag.graph.falkordb_store import FalkorDBStore

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

    def test_pipelined_error_names_the_statement_and_later_replies_still_come(self, store):
        from kgrag.errors import CypherError

        readers = store._send([("ok.cypher", "RETURN 1 AS x", {}), ("bad.cypher", "RETURN nosuchfunction(1) AS x", {}),
                               ("ok2.cypher", "RETURN $v AS x", {"v": "it's"})], None)
        assert readers[0]() == [{"x": 1}]
        with pytest.raises(CypherError, match="bad.cypher"):
            readers[1]()
        assert readers[2]() == [{"x": "it's"}]
        assert store.posteriors({}, ["nothing"]) == {"nothing": pytest.approx(0.01)}

    def test_pipeline_survives_a_killed_server(self, tmp_path):
        import os
        import signal

        from kgrag.graph.falkordb_server import EmbeddedFalkorDB
        from kgrag.graph.falkordb_store import FalkorDBStore

        srv = EmbeddedFalkorDB(tmp_path / "graph")
        srv.start()
        try:
            s = FalkorDBStore.from_server(srv, "g")
            s.ensure_schema()
            s.upsert_concepts([{"id": "a", "role": "Finding", "leak": 0.2}])
            assert s.posteriors({}, ["a"]) == {"a": pytest.approx(0.2)}
            os.kill(srv.pid(), signal.SIGKILL)
            pipe = s.pipeline()
            got = pipe.posteriors({}, ["a"])
            pipe.send()
            # the plain path restarts the embedded server; the AOF brought the concept back
            assert got.result() == {"a": pytest.approx(0.2)}
            s.close()
        finally:
            srv.stop()

    def test_backtick_ids_cannot_be_map_keys_and_say_so(self, store):
        from kgrag.errors import InputError
        from kgrag.types import ReportCandidate

        store.upsert_concepts([{"id": "a`b", "role": "ImageFinding"}, {"id": "c", "role": "Diagnosis"}])
        store.upsert_edges([{"src": "a`b", "dst": "c", "p": 0.5, "status": "accepted"}])
        assert store.posteriors({"a`b": 1.0}, ["c"])["c"] == pytest.approx(1 - 0.99 * 0.5)  # inference is Python
        with pytest.raises(InputError, match="backtick"):
            store.causal_scores([ReportCandidate("r", ["c"])], {})


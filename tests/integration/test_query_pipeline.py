"""Synthetic corpus → ingest → graph → a one-epoch model → index → queries (embedded FalkorDB)."""

import json
import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def home(synth_graph_home):
    from kgrag.index.indexset import build_from_settings
    from kgrag.model.train import train

    s, corpus, _ = synth_graph_home(240, 2)
    rep = train(s, epochs=1, batch_size=32, progress=False)
    assert rep.n_train > 100 and set(rep.fusion) == {"alpha", "beta", "gamma", "forms"}
    build_from_settings(s)
    return s, corpus.parent


def _test_image(tmp):
    rows = [json.loads(x) for x in (tmp / "c" / "manifest.jsonl").read_text().splitlines()]
    r = next(r for r in rows if r["split"] == "test")
    return str(tmp / "c" / r["images"][0]), r


@pytest.mark.parametrize("mode", ["causal", "pagerank", "none"])
def test_query_modes_follow_the_contract(home, mode):
    from kgrag.query.pipeline import Query, QueryPipeline
    from kgrag.query.schema import validate_query_output

    s, tmp = home
    img, row = _test_image(tmp)
    pipe = QueryPipeline.from_settings(s)
    try:
        res = pipe.run(Query(images=[img], question="Is there pleural effusion?", k=5, rerank=mode))
    finally:
        pipe.close()
    validate_query_output(res)
    assert len(res["evidence"]) == 5 and [e["rank"] for e in res["evidence"]] == [1, 2, 3, 4, 5]
    assert row["id"] not in {e["id"] for e in res["evidence"]}  # test studies are never evidence
    assert res["config"]["rerank"] == mode and res["config"]["graph_version"].startswith("g-")
    assert res["image_findings"] and res["answer"]["yes_no"] in ("yes", "no", None)
    assert {"SendGraphCalls", "Stage1Cases", "Explain", "FetchSentences"} <= set(res["trace"]["timings_ms"])
    if mode == "causal":
        assert all(e["causal_loglik"] is None or e["causal_loglik"] <= 0 for e in res["evidence"])
        scores = [e["score"] for e in res["evidence"]]
        assert scores == sorted(scores, reverse=True)


def test_text_only_query_uses_findings_as_observations(home):
    from kgrag.query.pipeline import Query, QueryPipeline

    s, _ = home
    pipe = QueryPipeline.from_settings(s)
    try:
        res = pipe.run(Query(findings="Focal consolidation in the right lower lobe.", question="Is there pneumonia?", k=3))
    finally:
        pipe.close()
    assert res["evidence"] and all(e["similarity"]["image_text"] is None for e in res["evidence"])
    pn = next(d for d in res["diagnoses"] if d["concept"] == "pneumonia")
    assert pn["paths"] and pn["paths"][0]["nodes"][0] == "consolidation"
    # a real intervention: do(consolidation = 0) cuts the stated finding away from pneumonia
    assert pn["counterfactual"][0]["do"] == {"consolidation": 0}
    assert pn["counterfactual"][0]["probability"] < pn["probability"]


def test_alpha_one_is_semantic_order(home):
    from kgrag.query.pipeline import Query, QueryPipeline

    s, tmp = home
    img, _ = _test_image(tmp)
    pipe = QueryPipeline.from_settings(s)
    try:
        res = pipe.run(Query(images=[img], k=8, alpha=1.0))
    finally:
        pipe.close()
    fused = [e["similarity"]["fused"] for e in res["evidence"]]
    assert fused == sorted(fused, reverse=True)


def test_cli_batch_json(home, tmp_path):
    s, tmp = home
    img, _ = _test_image(tmp)
    batch = tmp_path / "q.jsonl"
    batch.write_text(json.dumps({"images": [img], "question": "Is the heart enlarged?"}) + "\n"
                     + json.dumps({"findings": "Small left pleural effusion."}) + "\n")
    env = {**os.environ, "KGRAG_HOME": str(s.home)}
    r = subprocess.run([sys.executable, "-m", "kgrag", "query", "--batch", str(batch), "--k", "3"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    outs = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(outs) == 2 and all(len(o["evidence"]) == 3 for o in outs)


def test_index_refuses_a_changed_graph(home):
    from kgrag.errors import IndexMismatchError
    from kgrag.graph.factory import open_store
    from kgrag.query.pipeline import QueryPipeline

    s, _ = home
    store = open_store(s)
    e = store.edges("accepted")[0]
    store.set_status(e["src"], e["dst"], "rejected", reviewed_by="test")
    store.close()
    try:
        with pytest.raises(IndexMismatchError, match="kgrag index build"):
            QueryPipeline.from_settings(s)
    finally:
        store = open_store(s)
        store.set_status(e["src"], e["dst"], "accepted", reviewed_by="test")
        store.close()

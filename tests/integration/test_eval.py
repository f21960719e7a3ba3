"""``kgrag eval`` on a small synthetic home: the JSON, the ablations in scratch homes, the
leakage refusal, and the encoder memo (embedded FalkorDB)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kgrag.config import load_settings


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from kgrag.index.indexset import build_from_settings
    from kgrag.ingest.pipeline import ingest
    from kgrag.kg.build import build_graph
    from kgrag.model.train import train
    from kgrag.synth.generate import generate

    tmp = tmp_path_factory.mktemp("ev")
    generate(tmp / "c", 200, seed=3, progress=False)
    s = load_settings(tmp / "home")
    ingest(s, tmp / "c" / "manifest.jsonl", progress=False)
    build_graph(s)
    train(s, epochs=1, batch_size=32, progress=False)
    build_from_settings(s, progress=False)
    yield s, tmp
    from kgrag.graph.falkordb_server import EmbeddedFalkorDB

    EmbeddedFalkorDB(s.graph_dir).stop()


def _kgrag(args, home_dir, timeout=900):
    env = {**os.environ, "KGRAG_HOME": str(home_dir)}
    return subprocess.run([sys.executable, "-m", "kgrag", "eval", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _graph(s):
    from kgrag.graph.factory import open_store

    store = open_store(s)
    try:
        return store.version(), len(store.edges("accepted"))
    finally:
        store.close()


def test_eval_json_with_ablations(home, tmp_path):
    s, tmp = home
    version_before, accepted = _graph(s)
    out = tmp_path / "run"
    r = _kgrag([str(tmp / "c" / "manifest.jsonl"), "--task", "diagnosis,retrieval,vqa,report", "--json",
                "--limit", "8", "--bootstrap", "30", "--permutations", "30", "--graph", "random", "--noise", "0.5",
                "--sweep", "tau=0.9", "k=5", "--rerank", "pagerank", "--no-meteor", "--no-progress", "--shift",
                "--out", str(out)], s.home)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    assert res["format"] == "kgrag.eval.v1" and res["tasks"] == ["diagnosis", "retrieval", "vqa", "report"]
    names = [v["name"] for v in res["variants"]]
    assert names[:3] == ["causal", "semantic", "pagerank"]
    assert {"random_graph", "tau=0.9", "k=5", "causal+noise=0.5", "semantic+noise=0.5"} <= set(names)
    for task in res["tasks"]:
        tr = res["results"][task]
        assert set(names) == set(tr["variants"]), task
        assert {p["a"] for p in tr["paired"]} >= {"causal"} and tr["primary"]
        for v in tr["variants"].values():
            assert set(v) == {"metrics", "ci"}
    ci = res["results"]["diagnosis"]["variants"]["causal"]["ci"]["vote_macro_auc"]
    assert ci["n_boot"] == 30 and ci["low"] <= ci["value"] <= ci["high"]
    assert res["results"]["retrieval"]["pair_retrieval"]["n"] == 8
    assert res["results"]["report"]["variants"]["causal"]["metrics"]["generated"]["bleu_1"] is not None
    assert res["results"]["report"]["variants"]["causal+noise=0.5"]["metrics"]["generated"] is None
    groups = res["shift"]["groups"]
    assert set(groups) <= {"in_style", "out_of_style", "site_aligned", "site_reversed"}
    assert groups.get("in_style") == 8 and "out_of_style" not in groups  # a corpus drawn without --shift
    # the random graph keeps the learned graph's edge count; the user's graph is never touched
    g = res["graphs"]
    assert g["random"]["accepted"] == accepted == g["home"]["accepted"]
    assert g["random"]["graph_version"] != version_before and g["tau=0.9"]["graph_version"] != version_before
    assert _graph(s) == (version_before, accepted)
    assert not Path(g["random"]["scratch_home"]).exists()  # scratch homes are removed
    # noise really replaced half of each top-K
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    base = {p["query"]: p["evidence"] for p in preds if p["variant"] == "causal"}
    noisy = [p for p in preds if p["variant"] == "causal+noise=0.5"]
    assert noisy
    for p in noisy:
        diff = [i for i, (a, b) in enumerate(zip(base[p["query"]], p["evidence"], strict=True)) if a != b]
        assert diff == p["noise_positions"] and len(diff) == round(0.5 * len(p["evidence"]))
    html = (out / "report.html").read_text()
    assert "<table>" in html and "data:image/png;base64" in html
    assert (out / "results.md").read_text().startswith("# kgrag eval")
    assert any(Path(x).name.startswith("noise_") for x in res["outputs"]["plots"])


def test_eval_refuses_a_home_that_saw_a_test_study(home, tmp_path):
    s, tmp = home
    rows = [json.loads(x) for x in (tmp / "c" / "manifest.jsonl").read_text().splitlines()]
    flipped = next(r for r in rows if r["split"] == "train")
    flipped["split"] = "test"
    man = tmp / "c" / "manifest_flipped.jsonl"  # beside the images the paths point to
    man.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = _kgrag([str(man), "--task", "diagnosis", "--limit", "500", "--no-progress", "--out", str(tmp_path / "x")],
               s.home)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "saw test studies" in r.stderr and flipped["id"] in r.stderr and "fix:" in r.stderr


def test_memo_gives_the_pipelines_own_answers(home):
    from kgrag.eval.harness import open_pipeline
    from kgrag.query.pipeline import Query, QueryPipeline

    s, tmp = home
    row = next(json.loads(x) for x in (tmp / "c" / "manifest.jsonl").read_text().splitlines()
               if json.loads(x)["split"] == "test")
    q = Query(images=[str(tmp / "c" / row["images"][0])], question="Is there pleural effusion?", k=5)
    pipe = QueryPipeline.from_settings(s)
    try:
        plain = pipe.run(q)
    finally:
        pipe.close()
    pipe, memo = open_pipeline(s, "default")
    try:
        first, second = pipe.run(q), pipe.run(q)
    finally:
        pipe.close()
    for r in (first, second):
        assert [e["id"] for e in r["evidence"]] == [e["id"] for e in plain["evidence"]]
        assert r["answer"]["probability"] == plain["answer"]["probability"]
        assert r["image_findings"] == plain["image_findings"]
    assert memo.counts == {"image_hits": 1, "image_misses": 1}

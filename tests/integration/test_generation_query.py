"""kgrag query with each generator on a synth home (embedded FalkorDB), the answer's
counterfactuals against the reference model, and kgrag finetune end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "Is there pleural effusion?"


@pytest.fixture(scope="module")
def home(synth_graph_home):
    from kgrag.index.indexset import build_from_settings
    from kgrag.model.train import train

    s, corpus, _ = synth_graph_home(240, 2)
    if not (s.models_dir / "default" / "manifest.json").is_file():
        train(s, epochs=1, batch_size=32, progress=False)
    build_from_settings(s)
    rows = [json.loads(x) for x in (corpus / "manifest.jsonl").read_text().splitlines()]
    test = next(r for r in rows if r["split"] == "test")
    return s, str(corpus / test["images"][0]), test


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("transformers")
    from tests.unit.generation._gen_tiny import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")


def _kgrag(s, *args, timeout=600):
    env = {**os.environ, "KGRAG_HOME": str(s.home), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "kgrag", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


def test_query_json_answers_with_probability_evidence_paths_and_counterfactual(home):
    from kgrag.causal import inference
    from kgrag.causal.network import CausalGraph
    from kgrag.graph.factory import open_store
    from kgrag.query.schema import validate_query_output

    s, img, row = home
    res = json.loads(_kgrag(s, "query", "--image", img, "--question", QUESTION, "--json").stdout)
    validate_query_output(res)
    a = res["answer"]
    assert a["yes_no"] in ("yes", "no") and 0.0 <= a["probability"] <= 1.0 and a["concept"] == "pleural_effusion"
    assert a["generator"] == {"name": "grounded", "model": None, "prompt_version": "grounded.v2"}
    ids = [e["id"] for e in res["evidence"]]
    assert ids and row["id"] not in ids and set(a["citations"]) <= set(ids)
    assert all(f"[{c}]" in a["text"] for c in a["citations"])
    obs = res["trace"]["observe"]["v_i"]
    store = open_store(s)
    try:
        graph = CausalGraph.from_edges(store.edges("accepted"), {c["id"]: c.get("leak") for c in store.concepts()},
                                       default_leak=s.kg.default_leak)
    finally:
        store.close()
    # the posterior is exact inference on V_I, or None when the graph has no opinion (effusion
    # neither in V_I nor reached by a path from it: then only the evidence vote answers)
    if a["posterior"] is not None:
        assert a["posterior"] == pytest.approx(inference.posteriors(graph, obs, ["pleural_effusion"])["pleural_effusion"], abs=1e-5)
    else:
        assert "pleural_effusion" not in obs and not a["paths"]
    if "pleural_effusion" in obs:
        # effusion is observed (a soft root of V_I): its do(effusion = absent) moves the diagnoses
        # it feeds, each equal to the reference intervention on the same graph and V_I
        from kgrag.ontology import role_of

        below = {c for c in graph.nodes if role_of(c) == "Diagnosis" and "pleural_effusion" in graph.ancestors([c]) - {c}}
        if below:
            assert a["counterfactuals"], a
        for cf in a["counterfactuals"]:
            assert cf["do"] == {"pleural_effusion": 0} and cf["target"] in below and cf["description"].startswith("do(")
            ref = inference.interventions(graph, obs, [cf["do"]], [cf["target"]])[0][cf["target"]]
            assert cf["probability"] == pytest.approx(ref, abs=1e-5)
            assert f"P({cf['target'].replace('_', ' ')}" in a["text"] or "do(pleural effusion = absent)" in a["text"]
    # a diagnosis is inferred: paths into it and do() counterfactuals on its V_I ancestors,
    # equal to the reference model (exact inference, do() by graph surgery) on the same graph and V_I
    res = json.loads(_kgrag(s, "query", "--image", img, "--question", "Is there pneumonia?", "--json").stdout)
    validate_query_output(res)
    a = res["answer"]
    obs = res["trace"]["observe"]["v_i"]
    assert a["concept"] == "pneumonia" and a["yes_no"] in ("yes", "no")
    assert a["paths"] and all(p["nodes"][-1] == "pneumonia" for p in a["paths"])
    assert a["counterfactuals"], a
    done = inference.interventions(graph, obs, [cf["do"] for cf in a["counterfactuals"]], ["pneumonia"])
    assert [cf["probability"] for cf in a["counterfactuals"]] == pytest.approx([d["pneumonia"] for d in done], abs=1e-5)
    assert a["posterior"] == pytest.approx(inference.posteriors(graph, obs, ["pneumonia"])["pneumonia"], abs=1e-5)
    for cf in a["counterfactuals"]:
        assert cf["kind"] == "do" and cf["target"] == "pneumonia" and cf["description"].startswith("do(")


def test_report_and_batch_with_the_grounded_writer(home, tmp_path):
    s, img, _ = home
    batch = tmp_path / "q.jsonl"
    batch.write_text(json.dumps({"id": "a", "images": [img]}) + "\n"
                     + json.dumps({"id": "b", "images": [img], "question": "Where is the effusion?"}) + "\n"
                     + json.dumps({"id": "c", "images": [img], "question": "What is the most likely diagnosis?"}) + "\n")
    r = _kgrag(s, "query", "--batch", str(batch), "--k", "5")
    outs = [json.loads(x) for x in r.stdout.splitlines()]
    assert [o["query"]["id"] for o in outs] == ["a", "b", "c"]
    rep, where, dx = (o["answer"] for o in outs)
    assert rep["task"] == "report" and rep["text"].startswith("FINDINGS: ")
    ids = {e["id"] for e in outs[0]["evidence"]}
    for sent in rep["sentences"]:  # every report sentence is an evidence sentence or rests on V_I
        assert sent["source"] in ("evidence", "image", "graph", "note")
        if sent["source"] == "evidence":
            assert sent["evidence_id"] in ids
    assert where["intent"] == "location" and where["concept"] == "pleural_effusion"
    assert dx["task"] == "diagnosis" and dx["concept"] and "queries" in r.stderr  # batch progress on stderr


def test_query_with_a_tiny_transformers_model(home, tiny):
    s, img, _ = home
    r = _kgrag(s, "query", "--image", img, "--question", "Is there pneumonia?", "--json", "--generator",
               "transformers", "--model-path", str(tiny))
    res = json.loads(r.stdout)
    from kgrag.query.schema import validate_query_output

    validate_query_output(res)
    a = res["answer"]
    assert a["generator"]["name"] == "transformers" and a["generator"]["model"] == "tiny-llama"
    assert a["generator"]["prompt_version"] == "closed_vqa.v1" and a["yes_no"] in ("yes", "no")
    assert 0.0 <= a["probability"] <= 1.0 and a["scheme"] == "lm.yes_no.v1"
    assert a["counterfactuals"] and a["paths"]  # the graph's explanation rides along whatever the model writes
    assert "generating" in r.stderr


def test_missing_model_path_is_a_clear_error(home, tmp_path):
    s, img, _ = home
    env = {**os.environ, "KGRAG_HOME": str(s.home), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "kgrag", "query", "--image", img, "--question", QUESTION, "--generator",
                        "transformers"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode != 0 and "KGRAG_GENERATION__MODEL_PATH" in r.stderr and "Traceback" not in r.stderr


def test_finetune_end_to_end_then_query_with_the_adapter(home, tiny):
    s, img, _ = home
    r = _kgrag(s, "finetune", "--model-path", str(tiny), "--steps", "4", "--max-studies", "3", "--k", "3", "--lr", "5e-3",
               "--lora-r", "4", "--target-modules", "q_proj,v_proj", "--name", "lora-test", "--json")
    rep = json.loads(r.stdout)
    out = Path(rep["out_dir"])
    assert out == s.models_dir / "lora-test" and len(rep["losses"]) == 4 and rep["n_studies"] == 3
    m = json.loads((out / "manifest.json").read_text())
    assert m["splits"] == ["train"] and m["base_model_path"] == str(Path(tiny).resolve())
    assert m["graph_version"].startswith("g-") and m["index_version"] and m["data_hash"] == rep["data_hash"]
    assert m["lora"]["target_modules"] == ["q_proj", "v_proj"] and set(m["tasks"]) <= {"report", "closed_vqa"}
    res = json.loads(_kgrag(s, "query", "--image", img, "--question", QUESTION, "--json", "--generator", "transformers",
                            "--model-path", str(out)).stdout)
    assert res["answer"]["generator"]["base_model"] == str(Path(tiny).resolve())

"""Random graph, noise injection, the leakage guard and the variant plan."""

import json
import random
from collections import Counter

import pytest

from kgrag.errors import InputError
from kgrag.eval import ablation
from kgrag.eval.guard import check_home, find_leaks
from kgrag.eval.harness import parse_sweep, plan_variants
from kgrag.ontology import concepts
from kgrag.types import ALLOWED_EDGE_ROLES

ROLES = {c.id: c.role for c in concepts().values()}
LEARNED = [
    {"src": "consolidation", "dst": "pneumonia", "p": 0.6, "status": "accepted"},
    {"src": "lung_opacity", "dst": "consolidation", "p": 0.7, "status": "accepted"},
    {"src": "pleural_effusion", "dst": "heart_failure", "p": 0.4, "status": "accepted"},
    {"src": "cardiomegaly", "dst": "heart_failure", "p": 0.5, "status": "accepted"},
    {"src": "costophrenic_blunting", "dst": "pleural_effusion", "p": 0.8, "status": "accepted"},
    {"src": "edema", "dst": "heart_failure", "p": 0.3, "status": "accepted"},
    {"src": "atelectasis", "dst": "pneumonia", "p": 0.1, "status": "rejected"},
    {"src": "emphysema", "dst": "copd", "p": 0.2, "status": "proposed"},
]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_random_graph_keeps_edge_count_strengths_roles_and_acyclicity(seed):
    g = ablation.random_dag(LEARNED, ROLES, seed=seed)
    acc = [e for e in LEARNED if e["status"] == "accepted"]
    assert len(g) == len(acc)
    assert Counter(e["p"] for e in g) == Counter(e["p"] for e in acc)
    assert len({(e["src"], e["dst"]) for e in g}) == len(g)
    assert all((ROLES[e["src"]], ROLES[e["dst"]]) in ALLOWED_EDGE_ROLES for e in g)
    assert ablation.is_dag(g)
    considered = {x for e in LEARNED for x in (e["src"], e["dst"])}
    assert {x for e in g for x in (e["src"], e["dst"])} <= considered
    assert g == ablation.random_dag(LEARNED, ROLES, seed=seed)  # seeded


def test_random_graph_differs_from_the_learned_one():
    learned = {(e["src"], e["dst"]) for e in LEARNED if e["status"] == "accepted"}
    draws = [{(e["src"], e["dst"]) for e in ablation.random_dag(LEARNED, ROLES, seed=s)} for s in range(5)]
    assert any(d != learned for d in draws)
    assert len({frozenset(d) for d in draws}) > 1


def test_is_dag_finds_a_cycle():
    assert not ablation.is_dag([{"src": "a", "dst": "b"}, {"src": "b", "dst": "a"}])


def test_noise_really_injects_irrelevant_studies():
    doc_sets = {f"d{i}": frozenset({"pneumonia"} if i < 5 else {"nodule"}) for i in range(12)}
    doc_sets["d_normal"] = frozenset()
    pool = ablation.irrelevant_pool({"pneumonia", "consolidation"}, doc_sets)
    # share no present concept with the query (a normal study shares none)
    assert pool == sorted([*(f"d{i}" for i in range(5, 12)), "d_normal"])
    evidence = ["d0", "d1", "d2", "d3", "d4", "d5"]
    new, pos = ablation.inject_noise(evidence, 0.5, pool, random.Random(3))
    assert len(new) == len(evidence) and len(pos) == 3
    changed = [i for i in range(6) if new[i] != evidence[i]]
    assert changed == pos
    assert all(new[i] in pool and new[i] not in evidence for i in pos)
    assert len(set(new)) == len(new)
    assert ablation.inject_noise(evidence, 0.5, pool, random.Random(3)) == (new, pos)  # seeded
    assert ablation.inject_noise(evidence, 0.0, pool, random.Random(3)) == (evidence, [])
    all_new, _ = ablation.inject_noise(evidence[:4], 1.0, pool, random.Random(0))
    assert set(all_new) <= set(pool)
    # a normal query study: irrelevant evidence asserts a finding
    assert "d_normal" not in ablation.irrelevant_pool(set(), doc_sets)
    with pytest.raises(ValueError):
        ablation.inject_noise(evidence, 1.5, pool, random.Random(0))


def test_find_leaks_each_component():
    splits = {"s1": "train", "s2": "val", "t1": "test", "t2": "test"}
    assert find_leaks(["t1", "t2"], docstore_splits=splits, index_meta={"splits": {"s1": "train"}},
                      index_ids=["s1", "s2"], graph_edges=[{"evidence_studies": ["s1"]}],
                      graph_build={"n_train_studies": 1}, model_manifest={"n_train": 1, "n_val": 1}) == []
    by = {x["component"] for x in find_leaks(["s1"], docstore_splits=splits, index_meta=None)}
    assert by == {"docstore"}
    idx = find_leaks(["t1"], docstore_splits=splits, index_meta={"splits": {"t1": "train"}})
    assert [x["component"] for x in idx] == ["index"] and idx[0]["ids"] == ["t1"]
    g = find_leaks(["t2"], docstore_splits=splits, index_meta=None, graph_edges=[{"evidence_studies": ["t2", "s1"]}])
    assert [x["component"] for x in g] == ["graph"]
    stale = find_leaks(["t1"], docstore_splits=splits, index_meta=None, graph_build={"n_train_studies": 2})
    assert [x["component"] for x in stale] == ["graph"] and "left the train split" in stale[0]["message"]
    m = find_leaks(["t1"], docstore_splits=splits, index_meta=None, model_manifest={"n_train": 1, "n_val": 2})
    assert [x["component"] for x in m] == ["model"]
    ids = find_leaks(["t1"], docstore_splits=splits, index_meta=None, model_manifest={"train_ids": ["t1"]})
    assert ids[0]["component"] == "model" and ids[0]["ids"] == ["t1"]


class _Docs:
    def __init__(self, splits):
        self._s = splits

    def splits(self):
        return dict(self._s)

    def close(self):
        pass


class _Store:
    def __init__(self, edges):
        self._e = edges

    def edges(self, status=None):
        return list(self._e)

    def close(self):
        pass


def test_check_home_refuses_a_home_that_saw_a_test_study(tmp_path):
    from kgrag.config import load_settings

    s = load_settings(tmp_path / "home")
    (s.index_dir / "text").mkdir(parents=True)
    (s.index_dir / "manifest.json").write_text(json.dumps({"splits": {"a": "train", "b": "val"}}))
    (s.index_dir / "text" / "ids.json").write_text(json.dumps(["a", "b"]))
    docs = _Docs({"a": "train", "b": "val", "c": "test"})
    ok = check_home(s, ["c"], docstore=docs, store=_Store([]))
    assert ok["n_test"] == 1 and ok["docstore_counts"] == {"train": 1, "val": 1, "test": 1}
    # the manifest calls "a" a test study, the home trained on it
    with pytest.raises(InputError, match="saw test studies") as e:
        check_home(s, ["a", "c"], docstore=docs, store=_Store([]))
    assert "docstore" in e.value.message and "index" in e.value.message and e.value.fix
    with pytest.raises(InputError, match="provenance"):
        check_home(s, ["c"], docstore=docs, store=_Store([{"src": "x", "dst": "y", "evidence_studies": ["c"]}]))


def test_parse_sweep_and_plan():
    sw = parse_sweep(["alpha=0,0.5,1 tau=0.5,0.9", "k=5,10"])
    assert sw == {"alpha": [0.0, 0.5, 1.0], "tau": [0.5, 0.9], "k": [5, 10]}
    for bad in ("beta=1", "alpha", "alpha=2", "tau=0", "k=2.5", "alpha=x"):
        with pytest.raises(InputError):
            parse_sweep([bad])
    vs = plan_variants(sweep=sw, reranks=["pagerank", "causal"], graph_random=True, noise=[0.5])
    names = [v.name for v in vs]
    assert names[:3] == ["causal", "semantic", "pagerank"]
    assert "random_graph" in names and "tau=0.9" in names and "k=5" in names
    assert {"causal+noise=0.5", "semantic+noise=0.5", "pagerank+noise=0.5"} <= set(names)
    sem = next(v for v in vs if v.name == "semantic")
    assert sem.alpha == 1.0 and sem.rerank == "causal"
    assert next(v for v in vs if v.name == "tau=0.5").home_key == "tau=0.5"
    assert next(v for v in vs if v.name == "random_graph").home_key == "random"
    with pytest.raises(InputError):
        plan_variants(reranks=["bm25"])
    with pytest.raises(InputError):
        plan_variants(noise=[1.5])

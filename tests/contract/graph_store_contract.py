"""The GraphStore contract, written once and run on every backend.

Subclasses provide a ``store`` fixture yielding an empty store with its schema.
"""

from __future__ import annotations

import math

import pytest

from kgrag.causal import inference, likelihood, scoring
from kgrag.causal.network import CausalGraph
from kgrag.errors import CycleError, GraphStoreError, InputError
from kgrag.types import ReportCandidate

TINY_CONCEPTS = [
    {"id": "a", "role": "ImageFinding", "name": "A"},
    {"id": "b", "role": "Finding", "name": "B"},
    {"id": "c", "role": "Diagnosis", "name": "C"},
    {"id": "d", "role": "Finding", "name": "D"},
]
# a -> b (0.5), b -> c (0.4), a -> c (0.2), a -> d (0.9, proposed: never used)
TINY_EDGES = [
    {"src": "a", "dst": "b", "p": 0.5, "status": "accepted"},
    {"src": "b", "dst": "c", "p": 0.4, "status": "accepted"},
    {"src": "a", "dst": "c", "p": 0.2, "status": "accepted"},
    {"src": "a", "dst": "d", "p": 0.9, "status": "proposed"},
]
NASTY = [
    "it's",
    'say "hi"',
    "back`tick`",
    "a // not a comment",
    "line1\nline2\r\nline3",
    "$param {x} ${y}",
    "'); MATCH (n) DETACH DELETE n; //",
    "\\ backslash \\\\ and \\' escaped",
    "unicode: ✓ μ 肺",
    "}]) RETURN 1 //",
]


class GraphStoreContract:
    @pytest.fixture
    def tiny(self, store):
        store.upsert_concepts(TINY_CONCEPTS)
        store.upsert_edges(TINY_EDGES)
        return store

    # -- upserts ------------------------------------------------------------------
    def test_upserts_are_idempotent(self, store):
        for _ in range(2):
            store.upsert_concepts(TINY_CONCEPTS)
            store.upsert_studies([{"id": "s1", "split": "train", "modality": "radiology", "content_hash": "h"}])
            store.upsert_mentions([{"study_id": "s1", "concept": "a", "assertion": "present", "count": 2}])
            store.upsert_edges(TINY_EDGES)
        c = store.counts()
        assert (c["concepts"], c["studies"], c["asserts"], c["edges"]) == (4, 1, 1, 4)
        assert (c["accepted"], c["proposed"], c["rejected"]) == (3, 1, 0)
        roles = {x["id"]: x["role"] for x in store.concepts()}
        assert roles == {"a": "ImageFinding", "b": "Finding", "c": "Diagnosis", "d": "Finding"}

    @pytest.mark.parametrize("n", [1, 5000])
    def test_batch_sizes(self, store, n):
        store.upsert_concepts(
            [{"id": f"x{i}", "role": "Finding"} for i in range(n)] + [{"id": "root", "role": "ImageFinding"}]
        )
        rep = store.upsert_edges([{"src": "root", "dst": f"x{i}", "p": 0.5} for i in range(n)])
        assert rep.written == n
        c = store.counts()
        assert c["concepts"] == n + 1 and c["edges"] == n

    def test_duplicate_keys_in_one_batch_last_wins(self, store):
        store.upsert_concepts(TINY_CONCEPTS + [{"id": "a", "role": "ImageFinding", "name": "A2"}])
        rows = [{"src": "a", "dst": "b", "p": 0.1}] * 50 + [{"src": "a", "dst": "b", "p": 0.7}]
        rep = store.upsert_edges(rows)
        assert rep.duplicates_dropped == 50
        edges = store.edges()
        assert len(edges) == 1 and edges[0]["p"] == pytest.approx(0.7)
        assert {x["id"]: x["name"] for x in store.concepts()}["a"] == "A2"
        store.upsert_studies([{"id": "s"}, {"id": "s", "split": "val"}])
        store.upsert_mentions([{"study_id": "s", "concept": "a", "assertion": "absent"}] * 3)
        assert store.counts()["asserts"] == 1

    def test_values_stored_verbatim(self, store):
        store.upsert_concepts([{"id": s, "role": "Finding", "name": s + "\n", "synonyms": [s, s + "!"], "definition": s} for s in NASTY]
                              + [{"id": "root", "role": "ImageFinding"}])
        store.upsert_edges([{"src": "root", "dst": s, "p": 0.3, "note": s, "evidence_spans": [s]} for s in NASTY])
        got = {c["id"]: c for c in store.concepts()}
        for s in NASTY:
            assert got[s]["name"] == s + "\n" and got[s]["definition"] == s and got[s]["synonyms"] == [s, s + "!"]
        notes = {e["dst"]: e for e in store.edges()}
        for s in NASTY:
            assert notes[s]["note"] == s and notes[s]["evidence_spans"] == [s]
        assert store.counts()["concepts"] == len(NASTY) + 1
        store.set_status("root", NASTY[6], "rejected", reviewed_by=NASTY[0], note=NASTY[4])
        e = {x["dst"]: x for x in store.edges()}[NASTY[6]]
        assert e["reviewed_by"] == NASTY[0] and e["note"] == NASTY[4]

    @pytest.mark.parametrize("bad", ["", " a", "a ", "a\n", "a\r\n", "a\t", None, 3])
    def test_bad_ids_rejected_before_the_engine(self, store, bad):
        with pytest.raises(InputError, match="id"):
            store.upsert_concepts([{"id": bad, "role": "Finding"}])
        with pytest.raises(InputError, match="id"):
            store.upsert_studies([{"id": bad}])
        store.upsert_concepts([{"id": "ok", "role": "Finding"}])  # the engine is still alive
        assert store.counts()["concepts"] == 1

    def test_edges_need_known_concepts(self, store):
        store.upsert_concepts(TINY_CONCEPTS)
        with pytest.raises(InputError, match="unknown concepts"):
            store.upsert_edges([{"src": "a", "dst": "nope", "p": 0.5}])
        with pytest.raises(InputError):
            store.upsert_edges([{"src": "a", "dst": "b", "p": 1.5}])
        assert store.counts()["edges"] == 0

    # -- curation -----------------------------------------------------------------
    def test_status_change_and_lock_survive_upsert(self, tiny):
        r = tiny.set_status("a", "d", "accepted", reviewed_by="kim", note="seen on CT", reviewed_at="2026-01-01T00:00:00+00:00")
        assert r["status"] == "accepted" and r["locked"] is True
        rep = tiny.upsert_edges([{"src": "a", "dst": "d", "p": 0.33, "status": "rejected", "reviewed_by": None}])
        assert rep.skipped_locked == [("a", "d")]
        e = {(x["src"], x["dst"]): x for x in tiny.edges()}[("a", "d")]
        assert e["status"] == "accepted" and e["reviewed_by"] == "kim" and e["note"] == "seen on CT" and e["locked"]
        assert e["p"] == pytest.approx(0.33)  # statistics refresh
        tiny.upsert_edges([{"src": "a", "dst": "d", "p": 0.33, "status": "rejected"}], overwrite_locked=True)
        e = {(x["src"], x["dst"]): x for x in tiny.edges()}[("a", "d")]
        assert e["status"] == "rejected" and not e["locked"]

    def test_set_status_on_missing_edge(self, tiny):
        with pytest.raises(GraphStoreError, match="no CAUSES edge"):
            tiny.set_status("c", "a", "accepted", reviewed_by="kim")
        with pytest.raises(InputError):
            tiny.set_status("a", "b", "maybe", reviewed_by="kim")

    def test_edges_by_status(self, tiny):
        assert {(e["src"], e["dst"]) for e in tiny.edges("proposed")} == {("a", "d")}
        assert len(tiny.edges("accepted")) == 3

    def test_cycle_detection(self, tiny):
        assert scoring.find_cycles(tiny.edges()) == []
        tiny.upsert_edges([{"src": "c", "dst": "a", "p": 0.1, "status": "accepted"}])
        cycles = scoring.find_cycles(tiny.edges())
        assert cycles and all(set(c) <= {"a", "b", "c"} for c in cycles)

    # -- whole graph --------------------------------------------------------------
    def test_export_import_roundtrip_and_version(self, tiny, store_factory):
        tiny.set_status("a", "b", "accepted", reviewed_by="kim", reviewed_at="2026-01-01T00:00:00+00:00")
        data = tiny.export()
        v1 = tiny.version({"tau": 0.7})
        other = store_factory()
        other.import_(data)
        assert other.export() == data
        assert other.version({"tau": 0.7}) == v1
        assert tiny.version({"tau": 0.5}) != v1
        tiny.set_status("a", "d", "accepted", reviewed_by="kim")
        assert tiny.version({"tau": 0.7}) != v1

    def test_delete_mentions_and_studies(self, store):
        store.upsert_concepts(TINY_CONCEPTS)
        store.upsert_studies([{"id": "s1"}, {"id": "s2"}])
        store.upsert_mentions([{"study_id": s, "concept": c, "assertion": "present"} for s in ("s1", "s2") for c in ("a", "b")])
        assert store.delete_mentions(["s1"]) == 2
        assert store.counts()["asserts"] == 2
        store.delete_studies(["s2"])
        assert store.study_ids() == {"s1"} and store.counts()["asserts"] == 0

    # -- causal scoring: hand-computed values and the Python reference ----------------
    def test_pipeline_unread_replies_do_not_leak_into_later_calls(self, tiny):
        for _ in range(3):
            pipe = tiny.pipeline()
            pipe.posteriors({"a": 1.0}, ["c"])
            pipe.paths({"a": 1.0}, ["c"])
            pipe.causal_scores([ReportCandidate("r", ["c"])], {"a": 1.0}, graph=tiny.causal_graph())
            pipe.send()
            pipe.close()  # nothing read
        assert tiny.posteriors({"a": 1.0}, ["c"])["c"] == pytest.approx(0.367984, abs=1e-9)
        assert len(tiny.edges("accepted")) == 3

    def test_pipeline_bad_input_is_refused_before_sending(self, tiny):
        pipe = tiny.pipeline()
        with pytest.raises(InputError):
            pipe.posteriors({"a": 1.5}, ["c"])
        with pytest.raises(InputError):
            pipe.interventions({"a": 1.0}, [{"  a": 0}])
        with pytest.raises(InputError):
            pipe.causal_scores([ReportCandidate("r", ["c"])], {"a": -0.1}, graph=tiny.causal_graph())
        pipe.send()
        with pytest.raises(GraphStoreError, match="sent already"):
            pipe.paths({"a": 1.0}, ["c"])

    def test_paths_max_len(self, tiny):
        assert [p.nodes for p in tiny.paths({"a": 1.0}, ["c"], max_len=1)["c"]] == [["a", "c"]]
        assert tiny.paths({"a": 0.0}, ["c"]) == {"c": []}  # a concept the query says is absent explains nothing

    def test_paths_strongest_first(self, tiny):
        got = tiny.paths({"a": 1.0}, ["c", "d"])
        assert [p.nodes for p in got["c"]] in (
            [["a", "b", "c"], ["a", "c"]], [["a", "c"], ["a", "b", "c"]])
        assert all(p.strength == pytest.approx(0.2, abs=1e-9) for p in got["c"])
        assert got["d"] == []  # proposed edges never form paths

    # -- the causal model: exact posteriors, do(), pG (hand-computed and the references) --
    def test_causal_graph_holds_accepted_edges_and_leaks(self, tiny):
        tiny.upsert_concepts([{"id": "c", "role": "Diagnosis", "leak": 0.05}])
        g = tiny.causal_graph()
        assert g.parents == {"b": (("a", 0.5),), "c": (("a", 0.2), ("b", 0.4))}  # a -> d is only proposed
        assert g.leaks == {"a": 0.01, "b": 0.01, "c": 0.05, "d": 0.01}

    def test_posteriors_hand_computed(self, tiny):
        p = tiny.posteriors({"a": 1.0})
        # b = 1 - 0.99 * 0.5 = 0.505
        # c given a = 1: b = 1 w.p. 0.505 -> 1 - 0.99 * 0.8 * 0.6 = 0.5248; b = 0 -> 1 - 0.99 * 0.8 = 0.208
        #   0.505 * 0.5248 + 0.495 * 0.208 = 0.367984   (path noisy-OR would say 0.3664)
        assert p["b"] == pytest.approx(0.505, abs=1e-9)
        assert p["c"] == pytest.approx(0.367984, abs=1e-9)
        assert p["d"] == pytest.approx(0.01, abs=1e-9) and p["a"] == 1.0
        # soft a (q = 0.9): b = 0.9 * 0.505 + 0.1 * 0.01 = 0.4555;
        #   c given a = 0: 0.01 * (1 - 0.99 * 0.6) + 0.99 * 0.01 = 0.01396 -> 0.9 * 0.367984 + 0.1 * 0.01396
        p = tiny.posteriors({"a": 0.9}, ["b", "c", "unknown"])
        assert p["b"] == pytest.approx(0.4555, abs=1e-9)
        assert p["c"] == pytest.approx(0.9 * 0.367984 + 0.1 * 0.01396, abs=1e-9)
        assert p["unknown"] == pytest.approx(0.01, abs=1e-9)

    def test_shared_edges_counted_once(self, store):
        store.upsert_concepts([{"id": "a", "role": "ImageFinding", "leak": 0.3}]
                              + [{"id": x, "role": "Finding", "leak": 0.0} for x in ("b", "d")]
                              + [{"id": "c", "role": "Diagnosis", "leak": 0.0}])
        store.upsert_edges([{"src": s, "dst": d, "p": p, "status": "accepted"}
                            for s, d, p in (("a", "b", 0.5), ("b", "c", 1.0), ("b", "d", 1.0), ("d", "c", 1.0))])
        assert store.posteriors({"a": 1.0}, ["c"])["c"] == pytest.approx(0.5, abs=1e-12)

    def test_interventions_hand_computed_and_not_evidence_removal(self, store):
        # mediator a -> f (0.8) -> d (0.9), a -> d (0.3); leaks f 0.05, d 0.02
        store.upsert_concepts([{"id": "a", "role": "ImageFinding", "leak": 0.1}, {"id": "f", "role": "Finding", "leak": 0.05},
                               {"id": "d", "role": "Diagnosis", "leak": 0.02}])
        store.upsert_edges([{"src": s, "dst": d, "p": p, "status": "accepted"}
                            for s, d, p in (("a", "f", 0.8), ("f", "d", 0.9), ("a", "d", 0.3))])
        obs = {"a": 1.0, "f": 0.9}
        cf = store.interventions(obs, [{"f": 0}, {"f": 1}, {"a": 0}], ["d", "f"])
        assert cf[0]["d"] == pytest.approx(1 - 0.98 * 0.7, abs=1e-9) and cf[0]["f"] == 0.0
        assert cf[1]["d"] == pytest.approx(1 - 0.98 * 0.7 * 0.1, abs=1e-9)
        # do(a = 0) leaves f at its image probability 0.9 (a V_I root): 1 - 0.98 * (1 - 0.81)
        assert cf[2]["d"] == pytest.approx(1 - 0.98 * 0.19, abs=1e-9)
        without_f = store.posteriors({"a": 1.0}, ["d"])["d"]  # "without the evidence f": f from its CPD
        assert without_f == pytest.approx(1 - 0.98 * 0.7 * (1 - 0.9 * 0.81), abs=1e-9)
        assert abs(cf[0]["d"] - without_f) > 0.5
        assert store.interventions(obs, [], ["d"]) == []
        with pytest.raises(InputError, match="0 .absent. or 1"):
            store.interventions(obs, [{"f": 0.5}], ["d"])
        with pytest.raises(InputError):
            store.interventions(obs, [{" f": 0}], ["d"])

    def test_causal_scores_hand_computed(self, tiny):
        cands = [ReportCandidate("r1", ["c"], ["b"]), ReportCandidate("empty"), ReportCandidate("r3", ["x"], ["a"]),
                 ReportCandidate("r4", ["c"])]
        got = tiny.causal_scores(cands, {"a": 0.9}, normalize="sum")
        assert [g.id for g in got] == ["r1", "empty", "r3", "r4"]
        # r1: c with a in V_I (0.9) and b stated absent: 1 - 0.99 * (1 - 0.2 * 0.9) = 0.1882
        #     b absent, a in V_I: P(b) = 1 - 0.99 * (1 - 0.45) = 0.4555 -> log(0.5445)
        assert got[0].loglik == pytest.approx(math.log(0.1882) + math.log(0.5445), abs=1e-9) and got[0].n == 2
        assert got[0].per_concept[0] == {"concept": "c", "assertion": "present",
                                         "probability": pytest.approx(0.1882, abs=1e-9), "term": "cpd"}
        assert got[1].loglik is None and got[1].n == 0
        # r3: x is unknown -> the default leak 0.01; a in V_I denied: log(0.1)
        assert got[2].loglik == pytest.approx(math.log(0.01) + math.log(0.1), abs=1e-9)
        # r4: b unstated and not in V_I -> its prior marginal 1 - 0.99 * (1 - 0.5 * 0.01) = 0.01495
        assert got[3].loglik == pytest.approx(math.log(1 - 0.99 * 0.82 * (1 - 0.4 * 0.01495)), abs=1e-9)
        mean = tiny.causal_scores(cands, {"a": 0.9}, normalize="mean")
        assert mean[0].loglik == pytest.approx(got[0].loglik / 2, abs=1e-12)
        ref = likelihood.score_reports(tiny.causal_graph(), cands, {"a": 0.9}, normalize="sum")
        for g, r in zip(got, ref, strict=True):
            assert (g.loglik is None) == (r.loglik is None)
            if g.loglik is not None:
                assert g.loglik == pytest.approx(r.loglik, abs=1e-9)
            assert [x["concept"] for x in g.per_concept] == [x["concept"] for x in r.per_concept]
            assert [x["probability"] for x in g.per_concept] == pytest.approx([x["probability"] for x in r.per_concept], abs=1e-9)
        assert tiny.causal_scores([ReportCandidate("e")], {"a": 0.9})[0].loglik is None
        with pytest.raises(InputError):
            tiny.causal_scores(cands, {"a": 0.9}, normalize="max")
        with pytest.raises(InputError, match="asserts and denies"):
            tiny.causal_scores([ReportCandidate("r", ["a"], ["a"])], {})

    def test_model_matches_references_on_random_graph(self, store):
        import random

        rnd = random.Random(11)
        imgs, finds, diags = [f"i{k}" for k in range(4)], [f"f{k}" for k in range(5)], [f"d{k}" for k in range(3)]
        store.upsert_concepts([{"id": x, "role": "ImageFinding", "leak": round(rnd.random() * 0.3, 3)} for x in imgs]
                              + [{"id": x, "role": "Finding"} for x in finds]
                              + [{"id": x, "role": "Diagnosis", "leak": 0.02 + 0.01 * k} for k, x in enumerate(diags)])
        edges = []
        for s in imgs:
            for d in rnd.sample(finds, 3):
                edges.append({"src": s, "dst": d, "p": round(rnd.random(), 3),
                              "status": rnd.choice(["accepted", "accepted", "proposed"])})
        for i, s in enumerate(finds):
            for d in finds[i + 1:]:
                if rnd.random() < 0.3:
                    edges.append({"src": s, "dst": d, "p": round(rnd.random(), 3), "status": "accepted"})
            for d in rnd.sample(diags, 2):
                edges.append({"src": s, "dst": d, "p": round(rnd.random(), 3), "status": "accepted"})
        store.upsert_edges(edges)
        leaks = {c["id"]: c["leak"] for c in store.concepts()}
        ref_graph = CausalGraph.from_edges(edges, leaks, default_leak=store.default_leak)
        assert store.causal_graph() == ref_graph
        observed = {"i0": 0.9, "i2": 0.4, "f1": 1.0, "f3": 0.0}  # V_I holds findings too
        got = store.posteriors(observed)
        ref = inference.brute_force_marginals(ref_graph, clamp=observed)
        assert got.keys() == ref.keys()
        for t in ref:
            assert got[t] == pytest.approx(ref[t], abs=1e-9), t
        do = [{f: 0} for f in finds] + [{"i0": 0, "f2": 1}]
        for d, g in zip(do, store.interventions(observed, do, diags), strict=True):
            r = inference.brute_force_marginals(ref_graph, diags, clamp={**observed, **d})
            assert g == pytest.approx(r, abs=1e-9), d
        targets = imgs + finds + diags
        cands = [ReportCandidate(f"r{k}", rnd.sample(targets, 3), []) for k in range(12)]
        cands = [ReportCandidate(c.id, c.present, rnd.sample([t for t in targets if t not in c.present], 2)) for c in cands]
        for norm in ("sum", "mean", "lift"):
            for g, r in zip(store.causal_scores(cands, observed, normalize=norm),
                            likelihood.score_reports(ref_graph, cands, observed, normalize=norm), strict=True):
                assert g.loglik == pytest.approx(r.loglik, abs=1e-9)
                assert [x["probability"] for x in g.per_concept] == pytest.approx(
                    [x["probability"] for x in r.per_concept], abs=1e-9)
        gp = store.paths(observed, diags, limit=50)
        rp = scoring.paths(edges, observed, diags, limit=50)
        for d in diags:
            assert sorted((tuple(p.nodes), round(p.strength, 9)) for p in gp[d]) == sorted(
                (tuple(p.nodes), round(p.strength, 9)) for p in rp[d])

    def test_model_pipeline_shares_the_subgraph_call(self, tiny, monkeypatch):
        sent = []
        real = tiny._send

        def spy(calls, executor):
            sent.extend(name for name, _, _ in calls)
            return real(calls, executor)

        monkeypatch.setattr(tiny, "_send", spy)
        obs = {"a": 0.9}
        pipe = tiny.pipeline()
        post = pipe.posteriors(obs)
        cf = pipe.interventions(obs, [{"b": 0}], ["c"])
        graph = pipe.causal_graph()
        paths = pipe.paths(obs, ["c"])
        none = pipe.interventions(obs, [])
        pipe.send()
        assert sorted(sent) == ["get_causal_graph.cypher", "get_paths.cypher"]
        assert cf.result()[0] == pytest.approx(tiny.interventions(obs, [{"b": 0}], ["c"])[0], abs=1e-12)
        assert post.result() == pytest.approx(tiny.posteriors(obs), abs=1e-12)
        assert graph.result() == tiny.causal_graph()
        assert paths.result() == tiny.paths(obs, ["c"])
        assert none.result() == []
        pipe2 = tiny.pipeline()
        sc = pipe2.causal_scores([ReportCandidate("r1", ["c"], ["b"])], obs, graph=graph.result(), normalize="sum")
        pipe2.send()
        assert sc.result()[0].loglik == pytest.approx(math.log(0.1882) + math.log(0.5445), abs=1e-9)

    def test_cyclic_graph_is_refused_by_inference_not_by_paths(self, tiny):
        tiny.upsert_edges([{"src": "c", "dst": "a", "p": 0.1, "status": "accepted"}])
        with pytest.raises(CycleError, match="cycle") as e:
            tiny.posteriors({})
        assert "reject" in e.value.fix
        assert tiny.paths({"a": 1.0}, ["c"])["c"]

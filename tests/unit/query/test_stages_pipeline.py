"""Query stages and the pipeline on fakes: no model, no FAISS, no graph engine."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

from kgrag.causal import inference, likelihood, scoring
from kgrag.causal.network import CausalGraph
from kgrag.errors import InputError, TestLeakError
from kgrag.graph.graph_pipeline import Pending
from kgrag.model.fusion import FusionWeights
from kgrag.query import stages
from kgrag.query.pipeline import RERANKERS, QueryPipeline, format_output, read_batch
from kgrag.query.state import Hit, Query, QueryState
from kgrag.types import Mention

EDGES = [{"src": "lung_opacity", "dst": "consolidation", "p": 0.8, "status": "accepted"},
         {"src": "consolidation", "dst": "pneumonia", "p": 0.9, "status": "accepted"}]
GRAPH = CausalGraph.from_edges(EDGES, {}, default_leak=0.01)
IDS = ["s1", "s2", "s3", "t1"]
# unit vectors: s1 is closest to the query, then s2, then s3
VEC = {"s1": [1.0, 0.0], "s2": [0.8, 0.6], "s3": [0.0, 1.0], "t1": [0.99, 0.14]}
ASSERTIONS = {"s1": {"pneumonia": "absent", "consolidation": "absent"},
              "s2": {"pneumonia": "present", "consolidation": "present"},
              "s3": {}}


class FakeIndex:
    def __init__(self, ids=("s1", "s2", "s3"), splits=None):
        self._ids = list(ids)
        self.modalities = {i: "radiology" for i in self._ids}
        self.splits = splits or {i: "train" for i in self._ids}
        self.spaces = {"text": SimpleNamespace(row={i: n for n, i in enumerate(self._ids)})}
        self.version = "idx-1"

    def ids(self, space):
        return list(self._ids)

    def vectors(self, space, ids):
        return np.array([VEC[i] for i in ids], np.float32)

    def has(self, space, sid):
        return True

    def search(self, space, q, k):
        v = self.vectors(space, self._ids) @ q[0]
        order = np.argsort(-v)[:k]
        return [[self._ids[j] for j in order]], v[order][None]


class FakeCalls:
    """A graph pipeline answering from the pure-Python references."""

    def __init__(self, log):
        self.log, self.sent, self.closed = log, False, False

    def causal_graph(self):
        self.log.append("causal_graph")
        return Pending(lambda: GRAPH)

    def posteriors(self, obs, targets=None):
        self.log.append("posteriors")
        return Pending(lambda: inference.posteriors(GRAPH, obs, targets))

    def interventions(self, obs, do, targets=None):
        self.log.append("interventions")
        return Pending(lambda: inference.interventions(GRAPH, obs, do, targets))

    def paths(self, obs, targets, **kw):
        self.log.append("paths")
        return Pending(lambda: scoring.paths(EDGES, obs, targets, **kw))

    def causal_scores(self, candidates, observed, *, graph=None, normalize="mean"):
        self.log.append("causal_scores")
        return Pending(lambda: likelihood.score_reports(graph or GRAPH, candidates, observed, normalize=normalize))

    def send(self, executor=None):
        self.sent = True
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closed = True


class FakeStore:
    def __init__(self):
        self.calls: list[FakeCalls] = []
        self.log: list[str] = []
        self.closed = False

    def version(self):
        return "g-test"

    def causal_graph(self):  # read once at warm-up (the first query's do-sets)
        return GRAPH

    def pipeline(self):
        self.calls.append(FakeCalls(self.log))
        return self.calls[-1]

    def causal_scores(self, candidates, observed, *, graph=None, normalize="mean"):
        self.log.append("causal_scores")
        return likelihood.score_reports(graph or GRAPH, candidates, observed, normalize=normalize)

    def close(self):
        self.closed = True


class FakeModel:
    name = "fake"
    fusion = FusionWeights(0.5, 0.5, 0.0)
    reward_model = None

    def __init__(self, q=0.9):
        self.q = q

    def encode_images(self, images):
        return np.array([[1.0, 0.0]] * len(images), np.float32)

    def encode_texts(self, texts):
        return np.array([[1.0, 0.0]] * len(texts), np.float32)

    def findings_probs(self, images):
        return [{"lung_opacity": self.q, "nodule": 0.05}] * len(images)


@dataclass
class FakeStudy:
    findings: str
    report: str


class FakeDocstore:
    def __init__(self):
        self.closed = False

    def study_concepts(self):
        return ASSERTIONS

    def mentions(self, study_id=None):
        if study_id == "s2":
            return [Mention("s2", "pneumonia", "Diagnosis", "present", "impression", "Right lower lobe pneumonia.", 0, 5),
                    Mention("s2", "consolidation", "Finding", "present", "findings", "Dense consolidation.", 0, 5),
                    Mention("s2", "nodule", "ImageFinding", "present", "findings", "A small nodule.", 0, 5)]
        return []

    def get_study(self, sid):
        return FakeStudy(f"Findings of {sid}.", f"Report of {sid}.")

    def close(self):
        self.closed = True


class FakeExtractor:
    def extract(self, sid, text):
        out = []
        if "effusion" in text:
            out.append(Mention(sid, "pleural_effusion", "Finding", "absent" if "no " in text else "present", "findings", text, 0, 1))
        if "opacity" in text:
            out.append(Mention(sid, "lung_opacity", "ImageFinding", "present", "findings", text, 0, 1))
        return out


def _settings(**retrieval):
    r = {"k": 2, "n": 3, "alpha": 0.5, "rerank": "causal", "damping": 0.85, "reward_filter": True,
         "reward_threshold": None, "causal_normalize": "mean", **retrieval}
    return SimpleNamespace(retrieval=SimpleNamespace(**r), kg=SimpleNamespace(max_path_len=3, default_leak=0.01))


def _pipeline(index=None, **retrieval):
    return QueryPipeline(_settings(**retrieval), FakeModel(), index or FakeIndex(), FakeStore(), FakeDocstore(),
                         FakeExtractor())


def _image(tmp_path):
    from PIL import Image

    p = tmp_path / "q.png"
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(p)
    return str(p)


def test_constructor_does_no_io_and_warm_up_builds_stages_once():
    pipe = _pipeline()
    assert not hasattr(pipe, "graph_version") and pipe.store.calls == []
    pipe.warm_up()
    first = pipe.before_rerank
    pipe.warm_up()
    assert pipe.before_rerank is first and set(pipe.rerankers) == set(RERANKERS) == {"causal", "pagerank", "none"}
    assert pipe.graph_version == "g-test" and pipe.assertions == ASSERTIONS


def test_warm_up_builds_the_reward_filter_from_the_settings():
    pipe = _pipeline()
    pipe.warm_up()
    rf = next(s for s in pipe.after_rerank if isinstance(s, stages.RewardFilter))
    assert rf.enabled is True and rf.threshold is None  # on, with the model's trained threshold
    pipe = _pipeline(reward_filter=False, reward_threshold=0.3)
    pipe.warm_up()
    rf = next(s for s in pipe.after_rerank if isinstance(s, stages.RewardFilter))
    assert rf.enabled is False and rf.threshold == 0.3


def test_state_for_checks_options_before_any_work(tmp_path):
    pipe = _pipeline()
    with pytest.raises(InputError, match="needs an image"):
        pipe.state_for(Query())
    with pytest.raises(InputError, match="rerank"):
        pipe.state_for(Query(question="x", rerank="bogus"))
    with pytest.raises(InputError, match="alpha"):
        pipe.state_for(Query(question="x", alpha=2.0))
    st = pipe.state_for(Query(images=[_image(tmp_path)], k=5, n=1))
    assert st.k == 5 and st.n == 5 and st.q_image is not None and st.q_text is None  # n is at least k


def test_run_follows_the_stage_order_and_closes_the_graph_calls(tmp_path):
    pipe = _pipeline()
    res = pipe.run(Query(images=[_image(tmp_path)], question="Is there an opacity?"))
    names = list(res["trace"]["timings_ms"])
    assert names == ["Route", "ObserveFindings", "SendGraphCalls", "Stage1Cases", "CausalRerank", "RewardFilter",
                     "GuardTestSplit", "Stage2Definitions", "Explain", "FetchSentences"]
    calls = pipe.store.calls[-1]
    assert calls.sent and calls.closed
    assert pipe.store.log == ["causal_graph", "posteriors", "interventions", "paths", "causal_scores"]
    pn = next(d for d in res["diagnoses"] if d["concept"] == "pneumonia")
    assert pn["counterfactual"] == [{"do": {"lung_opacity": 0}, "probability": pytest.approx(0.01891, abs=1e-6)}]
    assert [e["rank"] for e in res["evidence"]] == [1, 2]
    assert res["config"]["graph_version"] == "g-test" and res["config"]["index_version"] == "idx-1"


def test_observe_findings_keeps_every_predicted_concept_and_reads_findings_text():
    st = QueryState(query=Query(findings="Patchy opacity, no effusion.", question="Any effusion?"), k=1, n=1,
                    alpha=0.5, rerank="none", images=[np.zeros((4, 4), np.float32)])
    st = stages.ObserveFindings(FakeModel(q=0.3), FakeExtractor()).run(st)
    # every concept the head predicts is in V_I, however low; the findings text states the opacity
    # present (1) and effusion absent (0)
    assert st.observed == {"lung_opacity": 1.0, "nodule": 0.05, "pleural_effusion": 0.0}
    assert [f["concept"] for f in st.image_findings] == ["lung_opacity", "nodule"]
    assert st.question_concepts == ["pleural_effusion"]


def test_causal_rerank_scores_log_pg_of_each_report():
    """V_I: lung_opacity 0.9.  s2 asserts consolidation and pneumonia: consolidation is not in
    V_I, so its CPD with the parent at q: 1 - 0.99 (1 - 0.8 * 0.9) = 0.7228; pneumonia's parent
    consolidation is stated present by s2 itself: 1 - 0.99 * 0.1 = 0.901.  s1 denies both:
    1 - 0.7228 and, with consolidation stated absent, 1 - 0.01."""
    st = QueryState(query=Query(), k=3, n=3, alpha=0.0, rerank="causal", observed={"lung_opacity": 0.9})
    st.graph = {"causal_graph": Pending(lambda: GRAPH)}
    st.candidates = [Hit("s1", {"fused": 0.9}), Hit("s2", {"fused": 0.1}), Hit("s3", {"fused": 0.5})]
    store = FakeStore()
    st = stages.CausalRerank(store, ASSERTIONS, use_filter=False).run(st)
    assert [h.id for h in st.candidates][0] == "s2"
    got = {h.id: h.causal_loglik for h in st.candidates}
    assert got["s2"] == pytest.approx((np.log(0.7228) + np.log(0.901)) / 2, abs=1e-12)
    assert got["s1"] == pytest.approx((np.log(1 - 0.7228) + np.log(0.99)) / 2, abs=1e-12)
    assert got["s3"] is None  # asserts nothing → minimum causal term
    assert st.trace["causal_rerank"]["scheme"] == "causal_rerank.v2"
    st = stages.CausalRerank(store, ASSERTIONS, normalize="sum", use_filter=False).run(st)
    assert {h.id: h.causal_loglik for h in st.candidates}["s2"] == pytest.approx(np.log(0.7228) + np.log(0.901))
    # alpha = 1 is similarity order
    st.alpha = 1.0
    st = stages.CausalRerank(store, ASSERTIONS, use_filter=False).run(st)
    assert [h.id for h in st.candidates] == ["s1", "s3", "s2"]


def test_causal_rerank_rescores_when_the_graph_changed_since_the_last_query():
    """The statement goes out with the previous query's priors; a changed graph is scored again."""
    store = FakeStore()
    rerank = stages.CausalRerank(store, ASSERTIONS, use_filter=False)

    def query(graph):
        # no V_I: s2's and s1's claims of consolidation read lung_opacity's prior marginal (its leak)
        st = QueryState(query=Query(), k=3, n=3, alpha=0.0, rerank="causal", observed={})
        st.graph = {"causal_graph": Pending(lambda: graph)}
        st.candidates = [Hit("s1", {"fused": 0.9}), Hit("s2", {"fused": 0.1})]
        got = {h.id: h.causal_loglik for h in rerank.run(st).candidates}
        want = {r.id: r.loglik for r in likelihood.score_reports(graph, rerank.candidates(st.candidates), {})}
        assert got == pytest.approx(want, abs=1e-12)
        return got

    first = query(GRAPH)
    assert store.log.count("causal_scores") == 1
    changed = CausalGraph.from_edges(EDGES, {"lung_opacity": 0.5}, default_leak=0.01)  # a new leak, new priors
    assert query(changed) != pytest.approx(first)
    assert store.log.count("causal_scores") == 3  # sent with the old priors, then again with the current ones
    query(changed)
    assert store.log.count("causal_scores") == 4  # unchanged graph: one statement


def test_causal_filter_drops_reports_that_deny_what_the_image_shows():
    st = QueryState(query=Query(), k=3, n=3, alpha=0.5, rerank="causal", observed={"consolidation": 0.95})
    st.graph = {"causal_graph": Pending(lambda: GRAPH)}
    st.candidates = [Hit("s1", {"fused": 0.9}), Hit("s2", {"fused": 0.1})]
    st = stages.CausalRerank(FakeStore(), ASSERTIONS).run(st)
    assert [h.id for h in st.candidates] == ["s2"]
    assert "denies consolidation" in st.trace["causal_rerank"]["dropped"][0]["reason"]


def test_explain_gives_exact_posteriors_and_real_interventions():
    st = QueryState(query=Query(), k=1, n=1, alpha=0.5, rerank="none", observed={"lung_opacity": 0.9})
    st.graph_calls = FakeCalls([])
    st = stages.SendGraphCalls(["consolidation", "pneumonia", "lung_opacity"], ["pneumonia"], max_len=3).run(st)
    assert st.trace["do"] == [{"lung_opacity": 0}]
    st = stages.Explain(["pneumonia"]).run(st)
    (pn,) = st.diagnoses
    # P(pneumonia | V_I) = 1 - 0.99 (1 - 0.9 * 0.7228); do(lung_opacity = 0): consolidation = 0.01,
    # pneumonia = 1 - 0.99 (1 - 0.009)
    assert pn["probability"] == pytest.approx(1 - 0.99 * (1 - 0.9 * 0.7228), abs=1e-6)
    assert pn["counterfactual"] == [{"do": {"lung_opacity": 0}, "probability": pytest.approx(1 - 0.99 * 0.991, abs=1e-6)}]
    assert pn["paths"][0]["nodes"] == ["lung_opacity", "consolidation", "pneumonia"]


def test_do_sets_follow_the_last_graph_and_observed_concepts_shield_their_parents():
    # V_I: lung_opacity 0.9, consolidation 0.6 and an unrelated support_devices 0.95.  By q
    # alone the do-sets would start with support_devices; with the last graph known they
    # start with the ancestors of pneumonia once V_I are soft roots: consolidation only,
    # since observing it shields lung_opacity (do(lung_opacity = 0) cannot move pneumonia)
    obs = {"lung_opacity": 0.9, "consolidation": 0.6, "support_devices": 0.95}
    memo: dict = {}
    send = stages.SendGraphCalls(["pneumonia"], ["pneumonia"], max_len=3, max_counterfactuals=2, memo=memo)
    st = QueryState(query=Query(), k=1, n=1, alpha=0.5, rerank="none", observed=dict(obs))
    st.graph_calls = FakeCalls([])
    st = send.run(st)
    assert st.trace["do"] == [{"support_devices": 0}, {"lung_opacity": 0}]  # nothing known yet: by q
    st = stages.Explain(["pneumonia"], memo=memo).run(st)
    assert memo["graph"] is GRAPH and st.diagnoses[0]["counterfactual"] == []  # neither can move pneumonia
    st = QueryState(query=Query(), k=1, n=1, alpha=0.5, rerank="none", observed=dict(obs))
    st.graph_calls = FakeCalls([])
    st = send.run(st)
    assert st.trace["do"] == [{"consolidation": 0}, {"support_devices": 0}]
    st = stages.Explain(["pneumonia"], memo=memo).run(st)
    (pn,) = st.diagnoses
    # P(pneumonia | V_I) = 1 - 0.99 (1 - 0.9 * 0.6); do(consolidation = 0): the leak 0.01
    assert pn["probability"] == pytest.approx(1 - 0.99 * (1 - 0.9 * 0.6), abs=1e-9)
    assert pn["counterfactual"] == [{"do": {"consolidation": 0}, "probability": pytest.approx(0.01, abs=1e-6)}]


def test_no_rerank_and_pagerank_set_scores():
    st = QueryState(query=Query(), k=3, n=3, alpha=0.5, rerank="none")
    st.candidates = [Hit("s1", {"fused": 0.9}), Hit("s2", {"fused": 0.4})]
    assert [h.score for h in stages.NoRerank().run(st).candidates] == [0.9, 0.4]
    st = stages.PageRankRerank(FakeIndex(), 0.85).run(st)
    assert all(h.pagerank is not None and h.score == h.pagerank for h in st.candidates)
    assert sum(h.pagerank for h in st.candidates) == pytest.approx(1.0)


def test_guard_refuses_test_studies_before_answering():
    st = QueryState(query=Query(), k=2, n=2, alpha=0.5, rerank="none")
    st.candidates = [Hit("s1", {"fused": 0.9}), Hit("t1", {"fused": 0.8})]
    with pytest.raises(TestLeakError, match="t1") as e:
        stages.GuardTestSplit({"s1": "train", "t1": "test"}).run(st)
    assert not isinstance(e.value, InputError)
    st.k = 1  # only the kept evidence is checked
    assert stages.GuardTestSplit({"s1": "train", "t1": "test"}).run(st) is st


def test_pipeline_with_a_leaking_index_raises_before_the_answer(tmp_path):
    idx = FakeIndex(ids=("s1", "t1"), splits={"s1": "train", "t1": "test"})
    pipe = _pipeline(index=idx, rerank="none")
    pipe.answer = lambda st: pytest.fail("answered despite the leak")
    with pytest.raises(TestLeakError):
        pipe.run(Query(images=[_image(tmp_path)]))
    assert pipe.store.calls[-1].closed  # the graph calls are closed on error too


def test_fetch_sentences_tags_sections_and_focuses_on_the_query():
    st = QueryState(query=Query(), k=2, n=2, alpha=0.5, rerank="none", observed={"consolidation": 0.9})
    st.diagnoses = [{"concept": "pneumonia", "probability": 0.8}]
    st.candidates = [Hit("s2", {"fused": 0.9}), Hit("s1", {"fused": 0.5})]
    st = stages.FetchSentences(FakeDocstore()).run(st)
    s2, s1 = st.candidates
    assert [(s.text, s.section) for s in s2.sentences] == [("Right lower lobe pneumonia.", "impression"),
                                                           ("Dense consolidation.", "findings")]
    assert [s.text for s in s1.sentences] == ["Findings of s1."]  # no mention → its findings


def test_format_output_rounds_and_ranks():
    st = QueryState(query=Query(id="q1", question="?"), k=1, n=2, alpha=0.5, rerank="none", modality="radiology")
    st.candidates = [Hit("s1", {"fused": 0.123456789, "image_text": None}, score=0.987654321, causal_loglik=-1.0000004)]
    out = format_output(st, {"text": "x", "yes_no": None, "probability": None}, graph_version="g", index_version="i",
                        model="m", seconds=0.1)
    assert out["evidence"] == [{"id": "s1", "rank": 1, "score": 0.987654, "similarity": {"fused": 0.123457, "image_text": None},
                                "causal_loglik": -1.0, "sentences": []}]
    assert out["query"]["id"] == "q1" and out["config"]["n"] == 2 and out["concepts"] == {}
    st.graph = {"posteriors": Pending(lambda: {"pneumonia": 0.123456789, "lung_opacity": 0.9})}
    out = format_output(st, None, graph_version="g", index_version="i", model="m", seconds=0.1)
    assert out["concepts"] == {"lung_opacity": 0.9, "pneumonia": 0.123457}


def test_format_output_gives_every_computed_posterior_and_v_i():
    """``concepts`` (DESIGN.md): the exact posterior of every target, q for V_I — also for a
    diagnosis too unlikely for ``diagnoses`` and for a findings-text query (no image)."""
    from concurrent.futures import Future

    st = QueryState(query=Query(id="q1", findings="The heart is enlarged."), k=1, n=2, alpha=0.5, rerank="none",
                    modality="radiology")
    st.observed = {"cardiomegaly": 1.0}
    fut: Future = Future()
    fut.set_result({"cardiomegaly": 0.99999999, "heart_failure": 0.0412344, "pneumonia": 0.01})
    st.graph = {"posteriors": fut}
    st.diagnoses = [{"concept": "heart_failure", "probability": 0.041234, "paths": [], "counterfactual": []}]
    out = format_output(st, {"text": "x", "yes_no": None, "probability": None}, graph_version="g", index_version="i",
                        model="m", seconds=0.1)
    assert out["image_findings"] == []
    assert out["concepts"] == {"cardiomegaly": 1.0, "heart_failure": 0.041234, "pneumonia": 0.01}
    from kgrag.query.schema import QUERY_OUTPUT_SCHEMA, validate

    validate(out, QUERY_OUTPUT_SCHEMA)
    out["concepts"]["pneumonia"] = 1.5
    with pytest.raises(Exception, match="pneumonia"):
        validate(out, QUERY_OUTPUT_SCHEMA)


def test_read_batch_keeps_every_query_field(tmp_path):
    p = tmp_path / "q.jsonl"
    p.write_text('{"id": "a", "images": ["x.png"], "question": "q?", "findings": "f", "k": 3, "n": 7, "alpha": 0.2,'
                 ' "rerank": "none", "modality": "radiology"}\n\n{"question": "only"}\n')
    a, b = read_batch(p)
    assert (a.id, a.images, a.question, a.findings, a.k, a.n, a.alpha, a.rerank, a.modality) == (
        "a", ["x.png"], "q?", "f", 3, 7, 0.2, "none", "radiology")
    assert b.images == [] and b.n is None
    p.write_text("[1, 2]\n")
    with pytest.raises(InputError, match="JSON object"):
        read_batch(p)
    p.write_text("{bad\n")
    with pytest.raises(InputError, match=":1: bad JSON"):
        read_batch(p)

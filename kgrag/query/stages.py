"""Pipeline stages: small components, each with ``run(state) -> state``.

The state is a plain dict; every stage records what it computed under
``state["trace"]`` so the answer can show each score it rests on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np

from kgrag.causal import scoring
from kgrag.model.fusion import FusionWeights
from kgrag.query import rerank as rr
from kgrag.query.pagerank import personalized_pagerank, similarity_graph
from kgrag.types import ReportCandidate

OBSERVE_MIN_Q = 0.1  # image-finding probabilities below this are not used as evidence


class Route:
    def __init__(self, router, modalities: Mapping[str, str]) -> None:
        self.router, self.modalities = router, modalities

    def run(self, st: dict[str, Any]) -> dict[str, Any]:
        if st.get("modality"):
            st["trace"]["route"] = {"modality": st["modality"], "forced": True}
            return st
        q = st["q_image"] if st["q_image"] is not None else st["q_text"]
        mod, scores = self.router.route(q) if q is not None else ("radiology", {})
        st["modality"] = mod
        st["trace"]["route"] = {"modality": mod, "scores": scores}
        return st


class ObserveFindings:
    """V_I: image-finding probabilities from the image; concepts stated present in a
    findings text (not in a question) as certain observations."""

    def __init__(self, model, extractor) -> None:
        self.model, self.extractor = model, extractor

    def run(self, st: dict[str, Any]) -> dict[str, Any]:
        obs: dict[str, float] = {}
        if st["images"]:
            probs = self.model.findings_probs(st["images"])
            for c in probs[0] if probs else {}:
                q = float(np.mean([p[c] for p in probs]))
                st["image_findings"].append({"concept": c, "probability": q})
                if q >= OBSERVE_MIN_Q:
                    obs[c] = q
        if st.get("findings_text"):
            for m in self.extractor.extract("query", st["findings_text"]):
                if m.assertion == "present":
                    obs[m.concept] = 1.0
        if st.get("question"):
            st["question_concepts"] = [m.concept for m in self.extractor.extract("question", st["question"])]
        st["observed"] = obs
        st["image_findings"].sort(key=lambda x: -x["probability"])
        return st


class Stage1Cases:
    """MR-RAG fused relevance over the indexed studies of the routed modality; top N."""

    def __init__(self, index, fusion: FusionWeights) -> None:
        self.index, self.fusion = index, fusion

    def run(self, st: dict[str, Any]) -> dict[str, Any]:
        n, pool = st["n"], max(4 * st["n"], 200)
        qi, qt = st["q_image"], st["q_text"]
        ids: set[str] = set()
        if qi is not None:
            for space in ("text", "image"):
                ids.update(self.index.search(space, qi[None], pool)[0][0])
        if qt is not None:
            ids.update(self.index.search("text", qt[None], pool)[0][0])
        ids = [i for i in sorted(ids) if self.index.modalities.get(i, "radiology") == st["modality"]]
        if not ids:
            st["candidates"] = []
            return st
        T = self.index.vectors("text", ids)
        s_it = T @ qi if qi is not None else None
        s_tt = T @ qt if qt is not None else None
        s_ii = None
        if qi is not None:
            img_mat = self.index.vectors("image", ids)
            has = np.array([self.index.has("image", i) for i in ids])
            s_ii = np.where(has, img_mat @ qi, s_it)
        from kgrag.model.fusion import fuse

        fused = fuse(self.fusion, s_it, s_ii, s_tt)
        order = np.argsort(-fused, kind="stable")[:n]
        st["candidates"] = [
            {"id": ids[j], "similarity": {
                "image_text": None if s_it is None else float(s_it[j]),
                "image_image": None if s_ii is None else float(s_ii[j]),
                "text_text": None if s_tt is None else float(s_tt[j]),
                "fused": float(fused[j])}} for j in order]
        st["trace"]["stage1"] = {"pool": len(ids), "n": len(st["candidates"]), "weights": self.fusion.effective(qi is not None, qt is not None)}
        return st


class CausalState:
    """Starts the graph-engine work that needs nothing but V_I, as soon as V_I is known.

    Three read-only statements go to the graph engine together, in this order: P(c | V_I)
    for every concept a candidate report can assert (``score_concepts``: the causal
    rerank, the diagnoses and the answer all read it), the do(o = absent)
    counterfactuals of the diagnoses for the strongest observations (the same
    statement, one row per scenario), and the strongest paths to each diagnosis and
    question concept (``get_paths``).  They are sent as a :class:`GraphPipeline
    <kgrag.graph.graph_pipeline.GraphPipeline>` before stage 1 searches FAISS, so the engine
    computes while retrieval runs (FalkorDB: pipelined on one connection; other
    backends: on ``executor``, the pipeline's graph worker).  Later stages read
    ``st["graph"][key].result()``; ``st["graph_pipeline"]`` is closed by the caller.
    """

    def __init__(self, store, targets: Sequence[str], diagnoses: Sequence[str], *, max_len: int, default_leak: float,
                 max_counterfactuals: int = 5, executor: Executor | None = None, explain: bool = True) -> None:
        """``explain=False`` sends only the probabilities (retrieval without :class:`Explain`)."""
        self.store, self.targets, self.diagnoses = store, list(targets), list(diagnoses)
        self.max_len, self.default_leak, self.max_cf, self.executor = max_len, default_leak, max_counterfactuals, executor
        self.explain = explain

    def run(self, st: dict[str, Any]) -> dict[str, Any]:
        obs = dict(st["observed"])
        kw = {"max_len": self.max_len, "default_leak": self.default_leak}
        targets = list(dict.fromkeys([*self.targets, *self.diagnoses, *st["question_concepts"]]))
        pipe = self.store.pipeline()
        st["graph"] = {"probabilities": pipe.concept_probabilities(obs, targets, **kw), "counterfactuals": None, "paths": None}
        if self.explain:
            top = sorted(obs, key=lambda o: (-obs[o], o))[: self.max_cf]
            path_targets = list(dict.fromkeys([*self.diagnoses, *st["question_concepts"]]))
            st["graph"]["counterfactuals"] = pipe.counterfactuals(obs, self.diagnoses, top, **kw)
            st["graph"]["paths"] = pipe.paths(obs, path_targets, max_len=self.max_len, limit=3)
        st["graph_pipeline"] = pipe.send(self.executor)
        return st


def graph_result(st: Mapping[str, Any], key: str, default: Any) -> Any:
    """The answer of a :class:`CausalState` call (waiting for it), or ``default`` when none was made."""
    fut = st["graph"][key]
    return default if fut is None else fut.result()


class CausalRerank:
    """MCRAG rerank of the stage-1 candidates from P(c | V_I), the causal filter, then Score.

    The probabilities come from :class:`CausalState` (one ``score_concepts`` query that
    covers every concept any candidate asserts); each report's mean log-likelihood follows
    from them (:func:`kgrag.causal.scoring.score_candidates`).
    """

    def __init__(self, assertions: Mapping[str, Mapping[str, str]], *, use_filter: bool = True) -> None:
        self.assertions, self.use_filter = assertions, use_filter

    def candidates(self, cands: Sequence[Mapping[str, Any]]) -> list[ReportCandidate]:
        cs = []
        for c in cands:
            a = self.assertions.get(c["id"], {})
            cs.append(ReportCandidate(c["id"], sorted(k for k, v in a.items() if v == "present" and k != "no_finding"),
                                sorted(k for k, v in a.items() if v == "absent" and k != "no_finding")))
        return cs

    def run(self, st: dict[str, Any]) -> dict[str, Any]:
        cands = st["candidates"]
        if not cands:
            return st
        scores = scoring.score_candidates(graph_result(st, "probabilities", {}), self.candidates(cands))
        dropped = []
        for c, s in zip(cands, scores, strict=True):
            c["causal_loglik"] = s.loglik
            c["claims"] = s.per_concept
            why = rr.contradicts(s.per_concept, st["observed"]) if self.use_filter and st["observed"] else None
            if why:
                dropped.append({"id": c["id"], "reason": why})
        keep = [c for c in cands if c["id"] not in {d["id"] for d in dropped}] or cands
        sc = rr.causal_scores([c["causal_loglik"] for c in keep], [c["similarity"]["fused"] for c in keep], st["alpha"])
        for c, v in zip(keep, sc, strict=True):
            c["score"] = float(v)
        keep.sort(key=lambda c: -c["score"])
        st["candidates"] = keep
        st["trace"]["causal_rerank"] = {"scheme": rr.SCHEME, "alpha": st["alpha"], "dropped": dropped}
        return st


class NoRerank:
    def run(self, st: dict[str, Any]) -> dict[str, Any]:
        for c in st["candidates"]:
            c["score"] = c["similarity"]["fused"]
            c.setdefault("causal_loglik", None)
        return st


class PageRankRerank:
    """Personalized PageRank over the candidates' similarity graph, seeded by query relevance."""

    def __init__(self, index, damping: float) -> None:
        self.index, self.damping = index, damping

    def run(self, st: dict[str, Any]) -> dict[str, Any]:
        cands = st["candidates"]
        if not cands:
            return st
        V = self.index.vectors("fused", [c["id"] for c in cands])
        seed = np.array([max(c["similarity"]["fused"], 0.0) for c in cands])
        pr = personalized_pagerank(similarity_graph(V), seed, self.damping)
        for c, v in zip(cands, pr, strict=True):
            c["pagerank"] = float(v)
            c["score"] = float(v)
            c.setdefault("causal_loglik", None)
        cands.sort(key=lambda c: -c["score"])
        st["trace"]["pagerank"] = {"damping": self.damping}
        return st


class RewardFilter:
    def __init__(self, model, index, threshold: float | None) -> None:
        self.model, self.index, self.threshold = model, index, threshold

    def run(self, st: dict[str, Any]) -> dict[str, Any]:
        if self.threshold is None or not st["candidates"] or self.model.reward_model is None:
            return st
        q = st["q_image"] if st["q_image"] is not None else st["q_text"]
        r = self.model.reward(q[None], self.index.vectors("text", [c["id"] for c in st["candidates"]]))
        for c, v in zip(st["candidates"], r, strict=True):
            c["reward"] = float(v)
        before = len(st["candidates"])
        st["candidates"] = [c for c in st["candidates"] if c["reward"] >= self.threshold] or st["candidates"][:1]
        st["trace"]["reward_filter"] = {"threshold": self.threshold, "dropped": before - len(st["candidates"])}
        return st


class Stage2Definitions:
    """Two-stage retrieval: definitions of the concepts the kept evidence mentions."""

    def run(self, st: dict[str, Any]) -> dict[str, Any]:
        from kgrag.ontology import concepts

        cs = concepts()
        seen = []
        for c in st["candidates"][: st["k"]]:
            for it in c.get("claims", []):
                if it["assertion"] == "present" and it["concept"] not in seen:
                    seen.append(it["concept"])
        st["definitions"] = [{"concept": c, "name": cs[c].name, "definition": cs[c].definition} for c in seen if c in cs]
        return st


class Explain:
    """Diagnoses given V_I with their strongest paths and do(finding = absent) counterfactuals,
    read from :class:`CausalState`'s calls."""

    def __init__(self, diagnoses: Sequence[str]) -> None:
        self.diagnoses = list(diagnoses)

    def run(self, st: dict[str, Any]) -> dict[str, Any]:
        diags = self.diagnoses
        probs = graph_result(st, "probabilities", {})
        paths = graph_result(st, "paths", {})
        cf_all = graph_result(st, "counterfactuals", {})
        out = []
        for d in sorted(diags, key=lambda d: (-probs[d], d)):
            ps = paths.get(d, [])
            starts = {p.nodes[0] for p in ps}
            cf = [{"remove": x["remove"], "probability": round(x["probability"], 6)}
                  for x in cf_all.get(d, []) if x["remove"] in starts]
            out.append({"concept": d, "probability": round(probs[d], 6),
                        "paths": [{"nodes": p.nodes, "strength": round(p.strength, 6)} for p in ps],
                        "counterfactual": cf})
        st["diagnoses"] = out
        return st

"""Query stages: small components, each with ``run(state) -> state`` over a
:class:`~kgrag.query.state.QueryState`.

The pipeline (:mod:`kgrag.query.pipeline`) builds them once and runs them in order:
route → observe V_I → send the graph calls → stage-1 cases → rerank (causal,
PageRank or none, from :data:`RERANKERS`) → reward filter → test-split guard →
stage-2 definitions → explain → evidence sentences.  Every stage records what it
computed under ``state.trace``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np

from kgrag.errors import TestLeakError
from kgrag.model.fusion import FusionWeights, form_of, fuse
from kgrag.query import rerank as rr
from kgrag.query.pagerank import personalized_pagerank, similarity_graph
from kgrag.query.state import EvidenceSentence, Hit, QueryState
from kgrag.types import ReportCandidate

MAX_SENTENCES = 4  # evidence sentences kept per study


class Route:
    """MMedRAG++ modality router, unless the query names its modality."""

    def __init__(self, router, modalities: Mapping[str, str]) -> None:
        self.router, self.modalities = router, modalities

    def run(self, st: QueryState) -> QueryState:
        if st.modality:
            st.trace["route"] = {"modality": st.modality, "forced": True}
            return st
        q = st.q_image if st.q_image is not None else st.q_text
        mod, scores = self.router.route(q) if q is not None else ("radiology", {})
        st.modality = mod
        st.trace["route"] = {"modality": mod, "scores": scores}
        return st


class ObserveFindings:
    """V_I, what the query shows (concept → probability it is present).

    An image: the findings head's calibrated probability of every concept the model
    can see (``model.visible``: image findings and findings whose val AUC passed the
    training check; the mean over the query's images).  A findings text: the
    non-diagnosis concepts it states, present 1 and absent 0 (present wins when both
    are stated; a hedged mention is no observation); it overrides the image for the
    same concept.  A diagnosis a findings text names is not observed — it is what the
    graph infers.  Concepts named in a question are its subject
    (``question_concepts``), never observations.
    The question's concepts come from ``parser``
    (:class:`kgrag.generation.questions.QuestionParser`: intents, polarity, declarative
    rewrites) when one is given, else from the extractor.
    """

    def __init__(self, model, extractor, parser=None) -> None:
        self.model, self.extractor, self.parser = model, extractor, parser

    def run(self, st: QueryState) -> QueryState:
        from kgrag.ontology import role_of

        obs: dict[str, float] = {}
        trace: dict[str, Any] = {}
        if st.images:
            probs = self.model.findings_probs(st.images)
            for c in probs[0] if probs else {}:
                q = float(np.mean([p[c] for p in probs]))
                st.image_findings.append({"concept": c, "probability": q})
                obs[c] = q
            trace["image"] = {"concepts": len(obs), "not_visible": getattr(self.model, "excluded", {})}
        if st.findings_text:
            present, absent, skipped = set(), set(), set()
            for m in self.extractor.extract("query", st.findings_text):
                if role_of(m.concept) == "Diagnosis":
                    skipped.add(m.concept)
                elif m.assertion == "present":
                    present.add(m.concept)
                elif m.assertion == "absent":
                    absent.add(m.concept)
            obs.update({c: 0.0 for c in absent - present})
            obs.update({c: 1.0 for c in present})
            trace["text"] = {"present": sorted(present), "absent": sorted(absent - present),
                             "diagnoses_not_observed": sorted(skipped)}
        if st.question and self.parser is not None:
            parsed = self.parser.parse(st.question)
            st.trace["question"] = parsed.to_dict()
            st.question_concepts = list(parsed.concepts)
        elif st.question:
            st.question_concepts = [m.concept for m in self.extractor.extract("question", st.question)]
        st.observed = obs
        st.image_findings.sort(key=lambda x: (-x["probability"], x["concept"]))
        trace["v_i"] = dict(obs)  # what the graph was given, for audit and for reproducing the numbers
        st.trace["observe"] = trace
        return st


class SendGraphCalls:
    """Sends the graph-engine work that needs nothing but V_I, as soon as V_I is known.

    Two read-only statements are queued on the query's graph pipeline
    (``state.graph_calls``, a :class:`~kgrag.graph.graph_pipeline.GraphPipeline` the
    query pipeline owns and closes) and sent together before stage 1 searches FAISS,
    so the engine computes while retrieval runs (FalkorDB: pipelined on one
    connection; other backends: on ``executor``):

    - ``get_causal_graph``: the accepted DAG with its leaks.  Three answers are read
      from it: ``causal_graph`` itself (the rerank's prior marginals), ``posteriors``
      (exact P(c | V_I) for every concept a candidate can assert, every diagnosis and
      the question's concepts) and ``interventions`` (do(F = 0) for the
      ``max_counterfactuals`` concepts of V_I with the highest q, P(target | do) for
      every diagnosis and question concept).
      Exact inference runs in Python when a later stage first reads them.
    - ``get_paths``: the strongest paths to each diagnosis and question concept
      (explanations only).

    Later stages read ``state.graph_result(key, default)``; the do-sets are in
    ``state.trace["do"]``, in the order of the ``interventions`` answer.
    """

    def __init__(self, targets: Sequence[str], diagnoses: Sequence[str], *, max_len: int,
                 max_counterfactuals: int = 5, executor: Executor | None = None, explain: bool = True,
                 memo: dict[str, Any] | None = None) -> None:
        """``explain=False`` sends only the subgraph (retrieval without :class:`Explain`).
        ``memo`` is shared with :class:`Explain`, which leaves the last causal graph in it:
        the do-sets then go first to the V_I concepts that are ancestors of a diagnosis
        or of the question's concepts in that graph (the graph of this query is not known
        yet; a stale one only changes which interventions are computed, never a number)."""
        self.targets, self.diagnoses = list(targets), list(diagnoses)
        self.max_len, self.max_cf, self.executor = max_len, max_counterfactuals, executor
        self.explain, self.memo = explain, memo

    def run(self, st: QueryState) -> QueryState:
        pipe = st.graph_calls
        obs = dict(st.observed)
        st.graph = {"causal_graph": pipe.causal_graph(), "posteriors": None, "interventions": None, "paths": None}
        if self.explain:
            targets = list(dict.fromkeys([*self.targets, *self.diagnoses, *st.question_concepts]))
            path_targets = list(dict.fromkeys([*self.diagnoses, *st.question_concepts]))
            ranked = [o for o in sorted(obs, key=lambda o: (-obs[o], o)) if obs[o] > 0.0]
            last = self.memo.get("graph") if self.memo is not None else None
            if last is not None:  # ancestors once V_I are soft roots: an observed concept shields its parents
                anc = last.surgery(obs).ancestors(path_targets)
                ranked = [o for o in ranked if o in anc] + [o for o in ranked if o not in anc]
            top = ranked[: self.max_cf]
            # a question about a concept of V_I: its own do(F = 0) shows what it explains downstream
            top += [c for c in st.question_concepts if obs.get(c, 0.0) > 0.0 and c not in top]
            do = [{o: 0} for o in top]
            st.trace["do"] = do
            st.graph["posteriors"] = pipe.posteriors(obs, targets)
            st.graph["interventions"] = pipe.interventions(obs, do, path_targets)
            st.graph["paths"] = pipe.paths(obs, path_targets, max_len=self.max_len, limit=3)
        pipe.send(self.executor)
        return st


class Stage1Cases:
    """MR-RAG fused relevance over the indexed studies of the routed modality; top N.
    The weights are those fitted for the query's form (image, image + question,
    image + findings, text alone: :func:`kgrag.model.fusion.form_of`)."""

    def __init__(self, index, fusion: FusionWeights) -> None:
        self.index, self.fusion = index, fusion

    def run(self, st: QueryState) -> QueryState:
        n, pool = st.n, max(4 * st.n, 200)
        qi, qt = st.q_image, st.q_text
        ids: set[str] = set()
        if qi is not None:
            for space in ("text", "image"):
                ids.update(self.index.search(space, qi[None], pool)[0][0])
        if qt is not None:
            ids.update(self.index.search("text", qt[None], pool)[0][0])
        ids = [i for i in sorted(ids) if self.index.modalities.get(i, "radiology") == st.modality]
        if not ids:
            st.candidates = []
            return st
        T = self.index.vectors("text", ids)
        s_it = T @ qi if qi is not None else None
        s_tt = T @ qt if qt is not None else None
        s_ii = None
        if qi is not None:
            img_mat = self.index.vectors("image", ids)
            has = np.array([self.index.has("image", i) for i in ids])
            s_ii = np.where(has, img_mat @ qi, s_it)
        form = form_of(qi is not None, bool(st.question), bool(st.findings_text))
        w = self.fusion.for_form(form)
        fused = fuse(w, s_it, s_ii, s_tt)
        order = np.argsort(-fused, kind="stable")[:n]
        st.candidates = [
            Hit(ids[j], {"image_text": None if s_it is None else float(s_it[j]),
                         "image_image": None if s_ii is None else float(s_ii[j]),
                         "text_text": None if s_tt is None else float(s_tt[j]),
                         "fused": float(fused[j])}) for j in order]
        st.trace["stage1"] = {"pool": len(ids), "n": len(st.candidates), "form": form,
                              "weights": w.effective(qi is not None, qt is not None)}
        return st


class CausalRerank:
    """MCRAG rerank (``causal_rerank.v2``) of the stage-1 candidates by log pG, the causal
    filter, then Score.

    log pG(V_D, V_F | V_I) of every candidate comes from one ``score_reports`` statement
    (:meth:`GraphStore.causal_scores <kgrag.graph.store.GraphStore.causal_scores>`): each
    claim in V_I is scored against the image's q, every other claim by its noisy-OR CPD
    given the report's own findings; the prior marginals it needs come from the
    subgraph :class:`SendGraphCalls` fetched.  ``normalize`` is
    ``retrieval.causal_normalize`` (sum of the terms, or their mean).  The statement is
    sent on its own graph pipeline, and the exact inference of :class:`Explain` runs
    while the engine scores (FalkorDB: pipelined; other backends: on ``executor``);
    see :meth:`_scores` for how the query waits on the engine only once.
    """

    def __init__(self, store, assertions: Mapping[str, Mapping[str, str]], *, normalize: str = "mean",
                 use_filter: bool = True, executor: Executor | None = None) -> None:
        self.store, self.assertions, self.normalize, self.use_filter = store, assertions, normalize, use_filter
        self.executor = executor
        self._seen = None  # the causal graph of the previous query: its priors are sent before this one's arrives

    def _scores(self, st: QueryState, cands: list[ReportCandidate]) -> list[Any]:
        """log pG of the candidates, waiting on the engine once.

        ``score_reports`` needs the prior marginals of the graph.  It is sent with those of
        the graph the previous query saw; while the engine scores, this query's subgraph
        (sent with V_I) is read and the exact inference the answer needs runs (the
        ``posteriors`` and ``interventions`` answers keep their value).  If the subgraph
        differs from the previous one (the graph was edited), the candidates are scored
        again with its priors, so the result is always that of the current graph."""
        pending = st.graph.get("causal_graph")
        guess = self._seen if pending is not None and self._seen is not None else st.graph_result("causal_graph", None)
        with self.store.pipeline() as calls:
            scores = calls.causal_scores(cands, st.observed, graph=guess, normalize=self.normalize)
            calls.send(self.executor)
            for key in ("posteriors", "interventions"):
                st.graph_result(key, None)
            fresh = st.graph_result("causal_graph", None)
            out = scores.result()
        if fresh is not None and guess is not fresh and fresh.fingerprint() != guess.fingerprint():
            out = self.store.causal_scores(cands, st.observed, graph=fresh, normalize=self.normalize)
        self._seen = fresh
        return out

    def candidates(self, hits: Sequence[Hit]) -> list[ReportCandidate]:
        cs = []
        for h in hits:
            a = self.assertions.get(h.id, {})
            cs.append(ReportCandidate(h.id, sorted(k for k, v in a.items() if v == "present" and k != "no_finding"),
                                      sorted(k for k, v in a.items() if v == "absent" and k != "no_finding")))
        return cs

    def run(self, st: QueryState) -> QueryState:
        hits = st.candidates
        if not hits:
            return st
        scores = self._scores(st, self.candidates(hits))
        dropped = []
        for h, s in zip(hits, scores, strict=True):
            h.causal_loglik = s.loglik
            h.claims = s.per_concept
            why = rr.contradicts(s.per_concept, st.observed) if self.use_filter and st.observed else None
            if why:
                dropped.append({"id": h.id, "reason": why})
        gone = {d["id"] for d in dropped}
        keep = [h for h in hits if h.id not in gone] or hits
        sc = rr.causal_scores([h.causal_loglik for h in keep], [h.fused for h in keep], st.alpha)
        for h, v in zip(keep, sc, strict=True):
            h.score = float(v)
        keep.sort(key=lambda h: -h.score)
        st.candidates = keep
        st.trace["causal_rerank"] = {"scheme": rr.SCHEME, "alpha": st.alpha, "normalize": self.normalize,
                                     "dropped": dropped}
        return st


class NoRerank:
    """Stage-1 order: the fused similarity is the score."""

    def run(self, st: QueryState) -> QueryState:
        for h in st.candidates:
            h.score = h.fused
        return st


class PageRankRerank:
    """Personalized PageRank over the candidates' similarity graph, seeded by query relevance."""

    def __init__(self, index, damping: float) -> None:
        self.index, self.damping = index, damping

    def run(self, st: QueryState) -> QueryState:
        hits = st.candidates
        if not hits:
            return st
        V = self.index.vectors("fused", [h.id for h in hits])
        seed = np.array([max(h.fused, 0.0) for h in hits])
        pr = personalized_pagerank(similarity_graph(V), seed, self.damping)
        for h, v in zip(hits, pr, strict=True):
            h.pagerank = h.score = float(v)
        hits.sort(key=lambda h: -h.score)
        st.trace["pagerank"] = {"damping": self.damping}
        return st


class RewardFilter:
    """MMedRAG++ reward filter, on by default: candidates whose reward is below the
    threshold are dropped (the best-ranked one always stays).

    The threshold is the model's own, trained on the val queries' stage-1 candidates
    for the query's kind — ``image`` (the query has one), ``text`` (a findings text,
    with or without a question) or ``question`` (a question alone) — see
    ``model.reward_threshold_for``; a kind the reward could not separate on val has
    none, and its filter stays off.  ``threshold`` overrides it
    (``retrieval.reward_threshold``) and ``enabled=False`` switches the filter off
    (``retrieval.reward_filter``).  The trace says which threshold ran, where it came
    from, or why the filter did not run.
    """

    def __init__(self, model, index, threshold: float | None = None, *, enabled: bool = True) -> None:
        self.model, self.index, self.threshold, self.enabled = model, index, threshold, enabled

    def run(self, st: QueryState) -> QueryState:
        if not st.candidates:
            return st
        kind = "image" if st.q_image is not None else "text" if st.findings_text else "question"
        if not self.enabled:
            st.trace["reward_filter"] = {"off": "switched off (retrieval.reward_filter = false)"}
            return st
        if self.model.reward_model is None:
            st.trace["reward_filter"] = {"off": f"model {self.model.name!r} has no reward model"}
            return st
        if self.threshold is not None:
            thr, source = float(self.threshold), "setting retrieval.reward_threshold"
        else:
            thr, source = self.model.reward_threshold_for(kind), f"model ({kind} queries)"
        if thr is None:
            st.trace["reward_filter"] = {"off": f"model {self.model.name!r} has no trained threshold for {kind} queries"}
            return st
        q = st.q_image if st.q_image is not None else st.q_text
        r = self.model.reward(q[None], self.index.vectors("text", [h.id for h in st.candidates]))
        for h, v in zip(st.candidates, r, strict=True):
            h.reward = float(v)
        before = len(st.candidates)
        st.candidates = [h for h in st.candidates if h.reward >= thr] or st.candidates[:1]
        st.trace["reward_filter"] = {"threshold": thr, "source": source, "kind": kind,
                                     "dropped": before - len(st.candidates)}
        return st


class GuardTestSplit:
    """Leakage guard: no ``test``-split study may reach the evidence (before anything is answered)."""

    def __init__(self, splits: Mapping[str, str]) -> None:
        self.splits = splits

    def run(self, st: QueryState) -> QueryState:
        leaked = [h.id for h in st.evidence if self.splits.get(h.id) == "test"]
        if leaked:
            raise TestLeakError(f"test-split studies {leaked} reached the evidence of a query",
                                fix="rebuild the index without test studies: 'kgrag index build'")
        return st


class Stage2Definitions:
    """Two-stage retrieval: definitions of the concepts the kept evidence mentions."""

    def __init__(self, concepts: Mapping[str, Any]) -> None:
        self.concepts = concepts

    def run(self, st: QueryState) -> QueryState:
        seen: list[str] = []
        for h in st.evidence:
            for it in h.claims:
                if it["assertion"] == "present" and it["concept"] not in seen:
                    seen.append(it["concept"])
        cs = self.concepts
        st.definitions = [{"concept": c, "name": cs[c].name, "definition": cs[c].definition} for c in seen if c in cs]
        return st


class Explain:
    """Each diagnosis with its exact posterior P(d | V_I), its strongest paths, and the
    real interventions do(F = 0) (graph surgery, then exact inference) of the strongest
    V_I concepts that are its ancestors once V_I are soft roots (an observed concept
    shields its parents), the one that moves d most first; read from
    :class:`SendGraphCalls`' calls."""

    def __init__(self, diagnoses: Sequence[str], memo: dict[str, Any] | None = None) -> None:
        self.diagnoses, self.memo = list(diagnoses), memo

    def run(self, st: QueryState) -> QueryState:
        post = st.graph_result("posteriors", {})
        paths = st.graph_result("paths", {})
        done = st.graph_result("interventions", [])
        graph = st.graph_result("causal_graph", None)
        if self.memo is not None and graph is not None:
            self.memo["graph"] = graph
        do = st.trace.get("do", [])
        # V_I enters as soft roots: a do() on a concept whose every path to d runs through
        # another observed concept cannot move d, so only the ancestors after surgery count
        shielded = graph.surgery(st.observed) if graph is not None else None
        out = []
        for d in sorted(self.diagnoses, key=lambda d: (-post.get(d, 0.0), d)):
            if d not in post:
                continue
            anc = shielded.ancestors([d]) - {d} if shielded is not None else set()
            cf = [{"do": dict(ds), "probability": round(res[d], 6)}
                  for ds, res in zip(do, done, strict=False) if d in res and set(ds) <= anc]
            cf.sort(key=lambda c: -abs(c["probability"] - post[d]))  # the intervention that moves d most first
            out.append({"concept": d, "probability": round(post[d], 6),
                        "paths": [{"nodes": p.nodes, "strength": round(p.strength, 6)} for p in paths.get(d, [])],
                        "counterfactual": cf})
        st.diagnoses = out
        return st


class FetchSentences:
    """The report sentences of each evidence study that mention the query's focus: V_I,
    the question's concepts and the top diagnoses (section-tagged), so a generator sees text.
    A study with no such mention contributes its findings (or the head of its report)."""

    def __init__(self, docstore) -> None:
        self.docstore = docstore

    def run(self, st: QueryState) -> QueryState:
        focus = set(st.observed) | set(st.question_concepts) | {d["concept"] for d in st.diagnoses[:3]}
        for h in st.evidence:
            out: list[EvidenceSentence] = []
            for m in self.docstore.mentions(study_id=h.id):
                if (not focus or m.concept in focus) and all(s.text != m.sentence for s in out):
                    out.append(EvidenceSentence(m.sentence, m.section, m.concept, m.assertion))
            if not out:
                study = self.docstore.get_study(h.id)
                if study is not None:
                    out = [EvidenceSentence(study.findings or study.report[:200], "findings" if study.findings else None)]
            h.sentences = out[:MAX_SENTENCES]
        return st

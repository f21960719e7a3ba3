"""The query pipeline: encode → stages → answer → format.

The stages (:mod:`kgrag.query.stages`) run in this order: route → observe V_I →
send the graph calls → stage-1 cases → rerank (causal, PageRank or none) → reward
filter → test-split guard → stage-2 definitions → explain → evidence sentences;
then :meth:`QueryPipeline.bundle` turns the state into an
:class:`~kgrag.generation.evidence.EvidenceBundle`, the generator (grounded,
transformers or http: :func:`kgrag.generation.base.make_generator`) writes the answer
from the bundle alone, and :func:`format_output` turns the state into the JSON
contract of DESIGN.md (``kgrag query --json``).

``QueryPipeline(...)`` only stores its clients; :meth:`QueryPipeline.warm_up`
does the I/O (graph version, router fit, the candidates' assertions) and builds
the stages once.  ``QueryPipeline.from_settings`` is the one place the model,
indexes, graph store and docstore are opened, and it warms the pipeline up.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kgrag.errors import InputError
from kgrag.graph.store import GraphStore
from kgrag.model.encoders import l2n
from kgrag.query import stages
from kgrag.query.state import RERANK_MODES, Query, QueryState

log = logging.getLogger(__name__)

__all__ = ["Query", "QueryPipeline", "QueryState", "RERANKERS", "format_output", "read_batch"]

#: The rerank stage of each ``--rerank`` mode, built from a warmed-up pipeline.
RERANKERS: dict[str, Callable[[QueryPipeline], Any]] = {
    "causal": lambda p: stages.CausalRerank(p.store, p.assertions, normalize=p.settings.retrieval.causal_normalize,
                                            executor=p.graph_worker),
    "pagerank": lambda p: stages.PageRankRerank(p.index, p.settings.retrieval.damping),
    "none": lambda p: stages.NoRerank(),
}


class QueryPipeline:
    def __init__(self, settings: Any, model: Any, index: Any, store: GraphStore, docstore: Any, extractor: Any,
                 generator: Any | None = None) -> None:
        """``generator``: what writes the answer (default: the offline grounded writer)."""
        self.settings, self.model, self.index, self.store, self.docstore, self.extractor = (
            settings, model, index, store, docstore, extractor)
        self.generator = generator
        self._graph_worker: ThreadPoolExecutor | None = None
        self._graph_memo: dict[str, Any] = {}  # the last causal graph (warm-up, Explain) → the next do-sets
        self._warm = False

    @classmethod
    def from_settings(cls, settings: Any, *, model_name: str = "default", generator: Any | None = None) -> QueryPipeline:
        from kgrag.docstore import DocStore
        from kgrag.graph.factory import open_store
        from kgrag.index.indexset import IndexSet
        from kgrag.ingest.extract import RuleExtractor
        from kgrag.model.retrieval_model import RetrievalModel

        model = RetrievalModel.load(settings.models_dir / model_name)
        model.warm_up()
        store = open_store(settings)
        index = IndexSet.load(settings.index_dir, expect_encoder=model.fingerprint, expect_graph_version=store.version())
        ext = RuleExtractor()
        ext.warm_up()
        pipe = cls(settings, model, index, store, DocStore.from_settings(settings), ext, generator)
        pipe.warm_up()
        return pipe

    def warm_up(self) -> None:
        """Read what every query needs (graph version, router, the indexed studies'
        assertions, the concept lists) and build the stages.  Idempotent."""
        if self._warm:
            return
        from kgrag.generation.questions import QuestionParser
        from kgrag.ontology import concepts, ids_with_role
        from kgrag.query.router import PrototypeRouter

        index, kg, rs = self.index, self.settings.kg, self.settings.retrieval
        self.graph_version = self.store.version()
        self._graph_memo["graph"] = self.store.causal_graph()  # picks the first query's do-sets (then each query's own)
        space = "image" if index.ids("image") else "text"
        ids = index.ids(space)
        self.router = PrototypeRouter.fit(index.vectors(space, ids), [index.modalities.get(i, "radiology") for i in ids])
        self.assertions = {sid: a for sid, a in self.docstore.study_concepts().items() if sid in index.spaces["text"].row}
        cs = concepts()
        # every concept a candidate can assert: exact P(c | V_I) for all of them from one subgraph call
        self.targets = sorted(set(cs) | {c for a in self.assertions.values() for c in a})
        self.diagnoses = [d for d in ids_with_role("Diagnosis") if d != "no_finding"]
        self.question_parser = QuestionParser(self.extractor)
        if self.generator is None:
            from kgrag.generation.grounded import GroundedGenerator

            gs = getattr(self.settings, "generation", None)
            self.generator = GroundedGenerator(causal_weight=gs.causal_weight) if gs is not None else GroundedGenerator()
        self.generator.warm_up()
        self.before_rerank = [
            stages.Route(self.router, index.modalities),
            stages.ObserveFindings(self.model, self.extractor, self.question_parser),
            stages.SendGraphCalls(self.targets, self.diagnoses, max_len=kg.max_path_len, executor=self.graph_worker,
                                  memo=self._graph_memo),
            stages.Stage1Cases(index, self.model.fusion),
        ]
        self.rerankers = {mode: build(self) for mode, build in RERANKERS.items()}
        self.after_rerank = [
            stages.RewardFilter(self.model, index, rs.reward_threshold, enabled=rs.reward_filter),
            stages.GuardTestSplit(index.splits),
            stages.Stage2Definitions(cs),
            stages.Explain(self.diagnoses, memo=self._graph_memo),
            stages.FetchSentences(self.docstore),
        ]
        self.names = {c.id: c.name for c in cs.values()}
        self.roles = {c.id: c.role for c in cs.values()}
        self._warm = True

    @property
    def graph_worker(self) -> ThreadPoolExecutor:
        """One thread that runs the graph-engine calls of a query while stage 1 searches FAISS
        (backends that cannot pipeline on one connection)."""
        if self._graph_worker is None:
            self._graph_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kgrag-graph")
        return self._graph_worker

    def close(self) -> None:
        if self._graph_worker is not None:
            self._graph_worker.shutdown(wait=True)
            self._graph_worker = None
        if self.generator is not None:
            self.generator.close()
        self.store.close()
        self.docstore.close()

    # ---------------------------------------------------------------------------------
    def state_for(self, q: Query) -> QueryState:
        """Check the query's options and encode its image(s) and text."""
        from kgrag.imaging import IMAGE_SIZE, load_image

        rs = self.settings.retrieval
        k = q.k or rs.k
        n = max(q.n or rs.n, k)
        alpha = rs.alpha if q.alpha is None else q.alpha
        mode = q.rerank or rs.rerank
        if mode not in RERANK_MODES:
            raise InputError(f"--rerank {mode!r} is not one of {', '.join(RERANK_MODES)}", fix="pick one of them")
        if not 0.0 <= alpha <= 1.0:
            raise InputError(f"alpha {alpha} is not in [0, 1]", fix="1 is semantic only, 0 causal only")
        if not q.images and not (q.question or q.findings):
            raise InputError("a query needs an image, a question or findings text",
                             fix="pass --image PATH and/or --question TEXT or --findings TEXT")
        st = QueryState(query=q, k=k, n=n, alpha=alpha, rerank=mode, modality=q.modality)
        st.images = [load_image(p, size=IMAGE_SIZE) for p in q.images]
        if st.images:
            st.q_image = l2n(self.model.encode_images(st.images).mean(axis=0, keepdims=True))[0]
        text = " ".join(x for x in (q.findings, q.question) if x)
        if text:
            st.q_text = self.model.encode_texts([text])[0]
        return st

    def retrieve(self, st: QueryState) -> QueryState:
        """Run the stages.  The graph calls go out as soon as V_I is known and their
        pipeline is closed (unread replies dropped) whatever happens."""
        self.warm_up()
        timings = st.trace.setdefault("timings_ms", {})
        chain = [*self.before_rerank, self.rerankers[st.rerank], *self.after_rerank]
        with self.store.pipeline() as calls:
            st.graph_calls = calls
            for stage in chain:
                t1 = time.perf_counter()
                st = stage.run(st)
                name = type(stage).__name__
                timings[name] = round(timings.get(name, 0.0) + (time.perf_counter() - t1) * 1000.0, 3)
            st.graph_calls = None
        return st

    def bundle(self, st: QueryState) -> Any:
        """The :class:`~kgrag.generation.evidence.EvidenceBundle` of an answered state: V_I,
        the evidence with its scores and its report sentences (every concept each sentence
        asserts, from the docstore's mentions, section-tagged), P(c | V_I) with paths and
        counterfactuals, the definitions, the parsed question and the versions."""
        from kgrag.generation.evidence import (
            ConceptProbability,
            Definition,
            EvidenceBundle,
            EvidenceItem,
            ParsedQuestion,
            QueryInfo,
            posteriors_from,
        )

        self.warm_up()
        q = st.query
        parsed = None
        if q.question:
            t = st.trace.get("question")
            parsed = ParsedQuestion.from_dict(t) if t else self.question_parser.parse(q.question)
        items = []
        for rank, h in enumerate(st.evidence, 1):
            study = self.docstore.get_study(h.id)
            text = {sec: v for sec in ("findings", "impression") if (v := getattr(study, sec, None))} if study else {}
            items.append(EvidenceItem(h.id, rank, float(h.score if h.score is not None else h.fused), dict(h.similarity),
                                      h.causal_loglik, h.reward, h.pagerank, _sentences(self.docstore, h), text))
        post = st.graph_result("posteriors", {})
        graph = st.graph_result("causal_graph", None)
        done = st.graph_result("interventions", [])
        do = st.trace.get("do", [])
        cfs: dict[str, list[dict[str, Any]]] = {}
        for t in post:  # do(F = 0) of the V_I concepts that are t's ancestors (graph surgery, exact inference)
            anc = graph.ancestors([t]) - {t} if graph is not None else set()
            cfs[t] = [{"do": dict(ds), "probability": res[t]} for ds, res in zip(do, done, strict=False)
                      if t in res and set(ds) <= anc]
        posteriors = posteriors_from(post, st.graph_result("paths", {}), cfs)
        return EvidenceBundle(
            query=QueryInfo(q.id, q.question, q.findings, tuple(q.images), st.modality or "radiology"),
            image_findings=tuple(ConceptProbability(f["concept"], float(f["probability"])) for f in st.image_findings),
            observed=dict(st.observed),
            evidence=tuple(items),
            posteriors=posteriors,
            definitions=tuple(Definition(d["concept"], d.get("name", d["concept"]), d.get("definition", ""))
                              for d in st.definitions),
            graph_version=self.graph_version,
            index_version=self.index.version,
            names=self.names,
            roles=self.roles,
            question=parsed,
        )

    def answer(self, st: QueryState) -> dict[str, Any]:
        """The generator's answer object (the ``answer`` of the JSON contract)."""
        from kgrag.generation.base import task_for

        b = self.bundle(st)
        t0 = time.perf_counter()
        ans = self.generator.generate(b, task_for(b))
        st.trace["generation"] = {"generator": ans.generator.get("name"), "task": ans.task,
                                  "ms": round((time.perf_counter() - t0) * 1000.0, 3)}
        return ans.to_dict()

    def run(self, q: Query) -> dict[str, Any]:
        t0 = time.perf_counter()
        st = self.retrieve(self.state_for(q))
        answer = self.answer(st)
        return format_output(st, answer, graph_version=self.graph_version, index_version=self.index.version,
                             model=self.model.name, seconds=time.perf_counter() - t0)


def _sentences(docstore: Any, h: Any) -> tuple:
    """A study's concept-bearing sentences, each with every (concept, assertion) the
    extractor found in it, in report order; then the state's sentences not among them."""
    from kgrag.generation.evidence import EvidenceSentence, Mentioned

    by_text: dict[str, tuple[str, list]] = {}
    for m in docstore.mentions(study_id=h.id):
        sec, ms = by_text.setdefault(m.sentence, (m.section, []))
        if all((x.concept, x.assertion) != (m.concept, m.assertion) for x in ms):
            ms.append(Mentioned(m.concept, m.assertion))
    out = [EvidenceSentence(t, sec or "other", tuple(ms)) for t, (sec, ms) in by_text.items()]
    for s in h.sentences:
        if s.text not in by_text:
            out.append(EvidenceSentence(s.text, s.section or "other",
                                        (Mentioned(s.concept, s.assertion),) if s.concept and s.assertion else ()))
    return tuple(out)


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def format_output(st: QueryState, answer: dict[str, Any], *, graph_version: str, index_version: str, model: str,
                  seconds: float) -> dict[str, Any]:
    """The ``kgrag query --json`` object (DESIGN.md) of an answered query."""
    q = st.query
    return {
        "query": {"id": q.id, "images": q.images, "question": q.question, "findings": q.findings, "modality": st.modality},
        "answer": answer,
        "image_findings": [{"concept": f["concept"], "probability": round(f["probability"], 6)} for f in st.image_findings],
        "diagnoses": [d for d in st.diagnoses if d["probability"] >= 0.05][:8] or st.diagnoses[:3],
        # P(c | V_I) of every concept the graph answered (exact inference; V_I concepts keep q)
        "concepts": {c: round(p, 6) for c, p in sorted(st.graph_result("posteriors", None).items())}
        if st.graph_result("posteriors", None) else {},
        "evidence": [{"id": h.id, "rank": r + 1, "score": round(h.score, 6),
                      "similarity": {k: _r(v) for k, v in h.similarity.items()},
                      "causal_loglik": _r(h.causal_loglik),
                      "sentences": [s.text for s in h.sentences]} for r, h in enumerate(st.evidence)],
        "definitions": st.definitions,
        "trace": st.trace,
        "config": {"alpha": st.alpha, "k": st.k, "n": st.n, "rerank": st.rerank, "graph_version": graph_version,
                   "index_version": index_version, "model": model, "seconds": round(seconds, 4)},
    }


_BATCH_FIELDS = ("images", "question", "findings", "k", "n", "alpha", "rerank", "modality", "id")


def read_batch(path: str | Path) -> list[Query]:
    """Queries from a JSONL file, one object per line with the fields of :class:`Query`."""
    out = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{i}: bad JSON ({e.msg})", fix="one JSON object per line") from e
        if not isinstance(d, dict):
            raise InputError(f"{path}:{i}: a query line must be a JSON object", fix='e.g. {"images": ["a.png"]}')
        unknown = sorted(set(d) - set(_BATCH_FIELDS))
        if unknown:
            log.warning("%s:%d: fields %s are not query fields and are ignored", path, i, unknown)
        kw = {f: d.get(f) for f in _BATCH_FIELDS}
        kw["images"] = list(kw["images"] or [])
        out.append(Query(**kw))
    return out

"""The query pipeline: route → observe V_I → stage-1 cases → causal / PageRank
rerank → reward filter → stage-2 definitions → explain → grounded answer.

``QueryPipeline.from_settings`` loads the model, indexes, graph store and
docstore once (warm mode); ``run`` answers one query with the JSON contract of
DESIGN.md (``kgrag query --json``).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgrag.errors import InputError
from kgrag.model.encoders import l2n
from kgrag.query import stages

log = logging.getLogger(__name__)


@dataclass
class Query:
    images: list[str] = field(default_factory=list)
    question: str | None = None
    findings: str | None = None
    k: int | None = None
    n: int | None = None
    alpha: float | None = None
    rerank: str | None = None
    modality: str | None = None
    id: str | None = None


class QueryPipeline:
    def __init__(self, settings: Any, model: Any, index: Any, store: Any, docstore: Any, extractor: Any) -> None:
        from kgrag.query.router import PrototypeRouter

        self.settings, self.model, self.index, self.store, self.docstore, self.extractor = settings, model, index, store, docstore, extractor
        self.graph_version = store.version()
        ids = index.ids("image") or index.ids("text")
        space = "image" if index.ids("image") else "text"
        self.router = PrototypeRouter.fit(index.vectors(space, ids), [index.modalities.get(i, "radiology") for i in ids])
        self.assertions = {sid: a for sid, a in docstore.study_concepts().items() if sid in index.spaces["text"].row}
        from kgrag.ontology import concepts, ids_with_role

        # every concept a candidate can assert: P(c | V_I) for all of them comes from one query
        self.targets = sorted(set(concepts()) | {c for a in self.assertions.values() for c in a})
        self.diagnoses = [d for d in ids_with_role("Diagnosis") if d != "no_finding"]
        self._graph_worker: ThreadPoolExecutor | None = None

    @classmethod
    def from_settings(cls, settings: Any, *, model_name: str = "default") -> QueryPipeline:
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
        return cls(settings, model, index, store, DocStore.from_settings(settings), ext)

    @property
    def graph_worker(self) -> ThreadPoolExecutor:
        """One thread that runs the graph-engine calls of a query while stage 1 searches FAISS."""
        if self._graph_worker is None:
            self._graph_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kgrag-graph")
        return self._graph_worker

    def close(self) -> None:
        if self._graph_worker is not None:
            self._graph_worker.shutdown(wait=True)
            self._graph_worker = None
        self.store.close()
        self.docstore.close()

    # ---------------------------------------------------------------------------------
    def _sentences(self, sid: str, concepts: set[str]) -> list[str]:
        out = []
        for m in self.docstore.mentions(study_id=sid):
            if (not concepts or m.concept in concepts) and m.sentence not in out:
                out.append(m.sentence)
        if not out:
            st = self.docstore.get_study(sid)
            if st is not None:
                out = [st.findings or st.report[:200]]
        return out[:4]

    def run(self, q: Query) -> dict[str, Any]:
        from kgrag.imaging import IMAGE_SIZE, load_image

        t0 = time.perf_counter()
        rs = self.settings.retrieval
        k, n = q.k or rs.k, max(q.n or rs.n, q.k or rs.k)
        alpha = rs.alpha if q.alpha is None else q.alpha
        mode = q.rerank or rs.rerank
        if mode not in ("causal", "pagerank", "none"):
            raise InputError(f"--rerank {mode!r} is not causal, pagerank or none", fix="pick one of the three")
        if not q.images and not (q.question or q.findings):
            raise InputError("a query needs an image, a question or findings text", fix="pass --image PATH and/or --question TEXT")
        images = [load_image(p, size=IMAGE_SIZE) for p in q.images]
        q_image = l2n(self.model.encode_images(images).mean(axis=0, keepdims=True))[0] if images else None
        text = " ".join(x for x in (q.findings, q.question) if x)
        q_text = self.model.encode_texts([text])[0] if text else None
        st: dict[str, Any] = {"images": images, "question": q.question, "findings_text": q.findings, "q_image": q_image,
                              "q_text": q_text, "k": k, "n": n, "alpha": alpha, "modality": q.modality,
                              "image_findings": [], "question_concepts": [], "trace": {}}
        kg = self.settings.kg
        chain = [stages.Route(self.router, self.index.modalities), stages.ObserveFindings(self.model, self.extractor),
                 stages.CausalState(self.store, self.targets, self.diagnoses, max_len=kg.max_path_len,
                                    default_leak=kg.default_leak, executor=self.graph_worker),
                 stages.Stage1Cases(self.index, self.model.fusion)]
        chain.append({"causal": lambda: stages.CausalRerank(self.assertions),
                      "pagerank": lambda: stages.PageRankRerank(self.index, rs.damping),
                      "none": lambda: stages.NoRerank()}[mode]())
        chain += [stages.RewardFilter(self.model, self.index, rs.reward_threshold), stages.Stage2Definitions(),
                  stages.Explain(self.diagnoses)]
        timings = st["trace"]["timings_ms"] = {}
        try:
            for stage in chain:
                t1 = time.perf_counter()
                st = stage.run(st)
                name = type(stage).__name__
                timings[name] = round(timings.get(name, 0.0) + (time.perf_counter() - t1) * 1000.0, 3)
            keep = st["candidates"][:k]
            answer = self._answer(st, keep)
        finally:
            if st.get("graph_pipeline") is not None:
                st["graph_pipeline"].close()
        splits = self.index.splits
        leaked = [c["id"] for c in keep if splits.get(c["id"]) == "test"]
        if leaked:
            raise InputError(f"test-split studies {leaked} reached the evidence", fix="rebuild the index with 'kgrag index build'")
        focus = set(st["observed"]) | set(st["question_concepts"]) | {d["concept"] for d in st["diagnoses"][:3]}
        evidence = [{"id": c["id"], "rank": r + 1, "score": round(c["score"], 6),
                     "similarity": {kk: (None if v is None else round(v, 6)) for kk, v in c["similarity"].items()},
                     "causal_loglik": None if c.get("causal_loglik") is None else round(c["causal_loglik"], 6),
                     "sentences": self._sentences(c["id"], focus)} for r, c in enumerate(keep)]
        return {
            "query": {"id": q.id, "images": q.images, "question": q.question, "findings": q.findings, "modality": st["modality"]},
            "answer": answer,
            "image_findings": [{"concept": f["concept"], "probability": round(f["probability"], 6)} for f in st["image_findings"]],
            "diagnoses": [d for d in st["diagnoses"] if d["probability"] >= 0.05][:8] or st["diagnoses"][:3],
            "evidence": evidence,
            "definitions": st.get("definitions", []),
            "trace": st["trace"],
            "config": {"alpha": alpha, "k": k, "n": n, "rerank": mode, "graph_version": self.graph_version,
                       "index_version": self.index.version, "model": self.model.name,
                       "seconds": round(time.perf_counter() - t0, 4)},
        }

    def _answer(self, st: dict[str, Any], keep: list[dict[str, Any]]) -> dict[str, Any]:
        from kgrag.generation.grounded import ConceptEvidence, answer_question, write_report
        from kgrag.ontology import concepts

        names = {c.id: c.name for c in concepts().values()}
        if st.get("question") and st["question_concepts"]:
            c = st["question_concepts"][0]
            ev = ConceptEvidence()
            for cand in keep:
                a = self.assertions.get(cand["id"], {}).get(c)
                if a == "present":
                    ev.present.append(cand["id"])
                elif a == "absent" or (a is None and cand["id"] in self.assertions):
                    ev.absent.append(cand["id"])
            p = stages.graph_result(st, "probabilities", {})[c] if st["observed"] else None
            paths = stages.graph_result(st, "paths", {}).get(c, [])
            return answer_question(c, p_causal=p, evidence=ev, names=names,
                                   paths=[{"nodes": x.nodes, "strength": round(x.strength, 6)} for x in paths])
        if st.get("question"):
            return {"text": "The question names no concept kgrag knows; see the evidence and diagnoses.",
                    "yes_no": None, "probability": None}
        return write_report(st["image_findings"], st["diagnoses"], evidence_ids=[c["id"] for c in keep], names=names)


def read_batch(path: str | Path) -> list[Query]:
    import json

    out = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{i}: bad JSON ({e.msg})", fix="one JSON object per line") from e
        imgs = d.get("images") or []
        out.append(Query(images=imgs, question=d.get("question"), findings=d.get("findings"), k=d.get("k"),
                         alpha=d.get("alpha"), rerank=d.get("rerank"), id=d.get("id")))
    return out



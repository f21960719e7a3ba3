"""Warm query latency for K=50 candidates at 4k and 100k indexed studies.

Synthetic 256-d vectors stand in for the encoders (the models are not what is
timed); the causal graph is the synthetic corpus's true model (reader
direction) loaded as accepted edges into the real embedded FalkorDB; candidate
reports assert/deny random concept sets.  Each query: FAISS top-N (N = 50) on
the fused space, then the rerank —

- ``causal``: one batched Cypher ``causal_scores`` call on FalkorDB + min–max Score;
- ``baseline``: FAISS + NumPy/pure-Python rerank with the same arithmetic
  (kgrag.kg.scoring in process, no graph engine).

Targets: p50 ≤ 20 ms at 4k, ≤ 40 ms at 100k; causal ≤ 1.5× baseline.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from _common import percentiles, timed, write


def main(repeat: int = 200) -> dict:
    from kgrag.kg import scoring
    from kgrag.kg.falkordb_server import EmbeddedFalkorDB
    from kgrag.kg.falkordb_store import FalkorDBStore
    from kgrag.kg.store import Candidate
    from kgrag.ontology import concepts
    from kgrag.retrieval import rerank
    from kgrag.retrieval.encoders import HashEncoder
    from kgrag.retrieval.index import IndexSet
    from kgrag.synth import model as truth

    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="kgrag-bench-q-"))
    srv = EmbeddedFalkorDB(tmp / "graph")
    srv.start()
    store = FalkorDBStore.from_server(srv, "bench")
    store.ensure_schema()
    store.upsert_concepts(concepts().values())
    edges = [{"src": c, "dst": p, "p": s * 0.8, "status": "accepted"} for p, c, s in truth.EDGES]
    store.upsert_edges(edges)
    ids_all = list(concepts())
    observed = {"lung_opacity": 0.9, "costophrenic_blunting": 0.7, "enlarged_cardiomediastinum": 0.6,
                "interstitial_markings": 0.4, "nodule": 0.3}
    res = {"k": 50, "observed_findings": len(observed), "repeat": repeat, "results": {}}
    for n in (4_000, 100_000):
        vecs = rng.standard_normal((n, 256)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        ids = [f"s{i}" for i in range(n)]
        t0 = time.perf_counter()
        idx = IndexSet._assemble(tmp / f"idx{n}", HashEncoder(256), {"text": (ids, vecs), "image": (ids, vecs), "fused": (ids, vecs)},
                                 {i: "radiology" for i in ids}, {i: "train" for i in ids}, "g-bench", 20_000)
        build_s = time.perf_counter() - t0
        claims = {i: (list(rng.choice(ids_all, 3, replace=False)), list(rng.choice(ids_all, 3, replace=False))) for i in ids}
        queries = rng.standard_normal((repeat, 256)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        it = iter(range(10**9))

        def one(causal: bool, queries=queries, it=it, idx=idx, claims=claims) -> None:
            q = queries[next(it) % repeat]
            got, sims = idx.search("fused", q[None], 50)
            cands = [Candidate(i, *claims[i]) for i in got[0]]
            if causal:
                sc = store.causal_scores(cands, observed)
            else:
                sc = scoring.candidate_scores(edges, cands, observed)
            rerank.causal_scores([s.loglik for s in sc], sims[0].tolist(), 0.5)

        for _ in range(10):  # warm up
            one(True)
            one(False)
        causal = percentiles(timed(lambda: one(True), repeat))
        base = percentiles(timed(lambda: one(False), repeat))
        res["results"][str(n)] = {"index_kind": idx.info()["spaces"]["fused"]["kind"], "index_build_s": round(build_s, 2),
                                  "causal_ms": causal, "baseline_ms": base,
                                  "ratio_p50": round(causal["p50"] / base["p50"], 3)}
    res["targets"] = {"p50_ms_4k": 20, "p50_ms_100k": 40, "max_ratio": 1.5}
    r4, r100 = res["results"]["4000"], res["results"]["100000"]
    res["meets"] = {"p50_4k": r4["causal_ms"]["p50"] <= 20, "p50_100k": r100["causal_ms"]["p50"] <= 40,
                    "ratio_4k": r4["ratio_p50"] <= 1.5, "ratio_100k": r100["ratio_p50"] <= 1.5}
    store.drop()
    store.close()
    srv.stop()
    write("query", res)
    return res


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=1))

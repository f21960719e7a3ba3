"""Causal scoring on the IU-Xray graph: K=50 candidates, 5 observed findings.

Fetches and ingests IU-Xray into a private home if needed (benchmarks/.home-iu),
builds the graph, then times ``store.causal_scores`` (one ``score_concepts``
query on the embedded FalkorDB for every concept the candidates assert, then each
report's mean log-likelihood) against the pure-Python reference on the same
edges, in the same run.  Also records the graph's counts, the build time and the 15
strongest accepted Finding→Diagnosis edges.
"""

from __future__ import annotations

import json

import numpy as np
from _common import ROOT, percentiles, timed, write


def main(repeat: int = 300) -> dict:
    from kgrag.causal import scoring
    from kgrag.config import load_settings
    from kgrag.docstore import DocStore
    from kgrag.graph.factory import open_store
    from kgrag.ingest.pipeline import ingest
    from kgrag.kg.build import build_graph
    from kgrag.types import ReportCandidate

    data = ROOT / "data" / "iu"
    if not (data / "manifest.jsonl").exists():
        from kgrag.ingest.fetch import fetch_iu_xray

        fetch_iu_xray(data)
    s = load_settings(ROOT / "benchmarks" / ".home-iu")
    ingest(s, data / "manifest.jsonl", workers=2, progress=False)
    rep = build_graph(s)
    store = open_store(s)
    edges = store.edges()
    leaks = {c["id"]: c["leak"] for c in store.concepts()}
    with DocStore.from_settings(s) as ds:
        sc = ds.study_concepts("val")
    ids = list(sc)
    rng = np.random.default_rng(0)
    acc = [e for e in edges if e["status"] == "accepted"]
    roots = sorted({e["src"] for e in acc if e["src_role"] in ("ImageFinding", "Finding")})
    observed = {c: float(q) for c, q in zip(rng.choice(roots, min(5, len(roots)), replace=False), rng.uniform(0.5, 1.0, 5), strict=False)}
    batches = []
    for _ in range(repeat):
        pick = rng.choice(ids, 50, replace=False)
        batches.append([ReportCandidate(i, [c for c, a in sc[i].items() if a == "present"], [c for c, a in sc[i].items() if a == "absent"]) for i in pick])
    it = iter(range(10**9))
    ref_it = iter(range(10**9))
    cy = percentiles(timed(lambda: store.causal_scores(batches[next(it) % repeat], observed), repeat))
    py = percentiles(timed(lambda: scoring.candidate_scores(edges, batches[next(ref_it) % repeat], observed, leaks=leaks), repeat))
    a = store.causal_scores(batches[0], observed)
    b = scoring.candidate_scores(edges, batches[0], observed, leaks=leaks)
    max_diff = max(abs(x.loglik - y.loglik) for x, y in zip(a, b, strict=True) if x.loglik is not None)
    top = sorted((e for e in acc if e["src_role"] == "Finding" and e["dst_role"] == "Diagnosis"), key=lambda e: -e["p"])[:15]
    res = {"graph": {"counts": store.counts(), "graph_version": rep.graph_version, "build_seconds": round(rep.seconds, 2),
                     "n_candidates": rep.n_candidates, "n_pruned_ci": rep.n_pruned_ci, "n_train_studies": rep.n_train_studies},
           "observed": observed, "k": 50, "falkordb_ms": cy, "python_reference_ms": py,
           "max_abs_loglik_difference": max_diff,
           "top_finding_to_diagnosis": [{"src": e["src"], "dst": e["dst"], "p": round(e["p"], 3), "support": e["support"],
                                         "p_value": e["p_value"]} for e in top]}
    store.close()
    write("kg", res)
    return res


if __name__ == "__main__":
    print(json.dumps(main(), indent=1, default=str))

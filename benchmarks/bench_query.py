"""Warm query latency for K=50 candidates at 4k and 100k indexed studies.

Synthetic 256-d vectors stand in for the encoders' output (the models are not what
is timed; ``bench_train.py`` measures them); the causal graph is the synthetic
corpus's true model (reader direction) loaded as accepted edges into the real
embedded FalkorDB; each study's report asserts/denies random concept sets; each
query has its own image vector and its own V_I (a probability drawn per query for
every ImageFinding and Finding concept: the image head predicts every concept an
image can show).  One query runs the query pipeline's own stages from V_I on:

    SendGraphCalls (the subgraph) → stage 1 (kgrag.query.stages.Stage1Cases: FAISS
    top-200 in the text and the image spaces, MR-RAG fusion, top N = 50) → causal
    rerank (CausalRerank: log pG of the 50 reports) → Score

and the variants differ only in where the graph's numbers come from:

- ``causal``: the pipeline as shipped — SendGraphCalls writes ``get_causal_graph``
  to the FalkorDB connection as soon as V_I is known (a GraphPipeline), so the
  engine answers while stage 1 runs; CausalRerank sends ``score_reports`` (log pG
  of every candidate, one statement) once the candidates are known;
- ``causal_serial``: the subgraph is fetched after stage 1 and read at once (what
  the overlap saves);
- ``baseline``: FAISS + in-process rerank: the same stages with log pG from the
  pure-Python reference (kgrag.causal.likelihood) over a copy of the graph, no
  graph engine.

The three variants are interleaved in rounds so that drift of a shared machine
hits all of them alike.  ``graph_call_ms`` is the ``score_reports`` call alone,
``subgraph_call_ms`` the ``get_causal_graph`` call alone.

Targets: p50 ≤ 20 ms at 4k, ≤ 40 ms at 100k; causal ≤ 1.5× baseline.
"""

from __future__ import annotations

import time

import numpy as np
from _common import percentiles, scratch_dir, timed, write

ROUNDS = 5
VARIANTS = ("causal", "causal_serial", "baseline", "causal_answer", "baseline_answer")


def main(repeat: int = 200, sizes: tuple[int, ...] = (4_000, 100_000)) -> dict:
    from kgrag.causal import inference, likelihood
    from kgrag.graph.falkordb_server import EmbeddedFalkorDB
    from kgrag.graph.falkordb_store import FalkorDBStore
    from kgrag.graph.graph_pipeline import Pending
    from kgrag.index.indexset import IndexSet
    from kgrag.model.encoders import HashEncoder
    from kgrag.model.fusion import FusionWeights
    from kgrag.ontology import concepts, ids_with_role
    from kgrag.query import stages
    from kgrag.query.state import Query, QueryState
    from kgrag.synth import model as truth

    rng = np.random.default_rng(0)
    tmp = scratch_dir("kgrag-bench-q-")
    srv = EmbeddedFalkorDB(tmp / "graph")
    srv.start()
    store = FalkorDBStore.from_server(srv, "bench")
    store.ensure_schema()
    store.upsert_concepts(concepts().values())
    edges = [{"src": c, "dst": p, "p": s * 0.8, "status": "accepted"} for p, c, s in truth.EDGES]
    store.upsert_edges(edges)
    graph = store.causal_graph()  # the baseline's in-process copy
    ids_all = sorted(concepts())
    diagnoses = [d for d in ids_with_role("Diagnosis") if d != "no_finding"]
    visible = sorted(ids_with_role("ImageFinding") + ids_with_role("Finding"))
    fusion = FusionWeights(0.4, 0.4, 0.2)

    class LocalCalls:
        """The baseline's graph calls: the pure-Python references over the in-process copy."""

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def send(self, executor=None):
            return self

        def causal_graph(self):
            return Pending(lambda: graph)

        def causal_scores(self, candidates, observed, *, graph=None, normalize="mean"):
            return Pending(lambda: likelihood.score_reports(graph, candidates, observed, normalize=normalize))

        def posteriors(self, observed, targets=None):
            return Pending(lambda: inference.posteriors(graph, observed, targets))

        def interventions(self, observed, do, targets=None):
            return Pending(lambda: inference.interventions(graph, observed, do, targets))

        def paths(self, observed, targets, **kw):
            return Pending(lambda: {t: [] for t in targets})

    class InProcess:
        """The baseline's "store": no graph engine."""

        def pipeline(self):
            return LocalCalls()

        def causal_scores(self, candidates, observed, *, graph=None, normalize="mean"):
            return likelihood.score_reports(graph, candidates, observed, normalize=normalize)

    local = InProcess()
    send = stages.SendGraphCalls(ids_all, diagnoses, max_len=3, explain=False)
    send_explain = stages.SendGraphCalls(ids_all, diagnoses, max_len=3, explain=True)
    explain = stages.Explain(diagnoses)

    def draw_observed() -> dict[str, float]:
        q = rng.beta(0.6, 1.4, len(visible))
        return {c: float(x) for c, x in zip(visible, q, strict=True)}

    res: dict = {"k": 50, "stage1_pool_per_space": 200, "repeat_per_round": repeat, "rounds": ROUNDS,
                 "scheme": stages.rr.SCHEME, "normalize": "mean", "v_i_concepts": len(visible),
                 "graph": {"concepts": len(ids_all), "accepted_edges": len(edges)}, "results": {}}
    for n in sizes:
        base_vecs = rng.standard_normal((n, 256)).astype(np.float32)
        spaces = {}
        for space in ("text", "image", "fused"):
            v = base_vecs + 0.5 * rng.standard_normal((n, 256)).astype(np.float32)
            spaces[space] = v / np.linalg.norm(v, axis=1, keepdims=True)
        ids = [f"s{i}" for i in range(n)]
        t0 = time.perf_counter()
        idx = IndexSet._assemble(tmp / f"idx{n}", HashEncoder(256), {s: (ids, v) for s, v in spaces.items()},
                                 {i: "radiology" for i in ids}, {i: "train" for i in ids}, "g-bench", 20_000)
        build_s = time.perf_counter() - t0
        assertions = {}
        for i in ids:
            pres, ab = rng.choice(ids_all, 3, replace=False), rng.choice(ids_all, 3, replace=False)
            a = {c: "absent" for c in ab}
            a.update({c: "present" for c in pres})
            assertions[i] = a
        qv = rng.standard_normal((repeat, 256)).astype(np.float32)
        qv /= np.linalg.norm(qv, axis=1, keepdims=True)
        observed = [draw_observed() for _ in range(repeat)]
        stage1 = stages.Stage1Cases(idx, fusion)
        rerank = {"causal": stages.CausalRerank(store, assertions), "baseline": stages.CausalRerank(local, assertions)}
        it = iter(range(10**9))

        def one(variant: str, *, qv=qv, observed=observed, it=it, stage1=stage1, rerank=rerank) -> list[str]:
            j = next(it) % repeat
            st = QueryState(query=Query(), k=50, n=50, alpha=0.5, rerank="causal", modality="radiology",
                            q_image=qv[j], observed=dict(observed[j]))
            where = local if variant.startswith("baseline") else store
            with where.pipeline() as calls:
                st.graph_calls = calls
                if variant == "causal_serial":
                    st = send.run(stage1.run(st))
                else:
                    st = stage1.run((send_explain if variant.endswith("answer") else send).run(st))
                st = rerank["baseline" if where is local else "causal"].run(st)
                if variant.endswith("answer"):
                    st = explain.run(st)
            return [h.id for h in st.candidates] + [d["concept"] for d in st.diagnoses]

        # the variants rank alike (the same log pG to 1e-9, so the same order)
        for j0 in range(5):
            orders = [one(v, it=iter([j0])) for v in VARIANTS]
            assert orders[0] == orders[1] == orders[2] and orders[3] == orders[4], "variants disagree"
        for _ in range(20):  # warm up
            for v in VARIANTS:
                one(v, it=it)
        cand_sets = []  # the 50 candidates of each query, for the graph-call-alone timings
        for j in range(repeat):
            hits = stage1.run(QueryState(query=Query(), k=10, n=50, alpha=0.5, rerank="causal", q_image=qv[j],
                                         modality="radiology")).candidates
            cand_sets.append(rerank["causal"].candidates(hits))
        n_claims = float(np.mean([sum(len(c.present) + len(c.absent) for c in cs) for cs in cand_sets]))
        samples: dict[str, list[float]] = {**{v: [] for v in VARIANTS}, "graph_call": [], "subgraph_call": []}
        for _ in range(ROUNDS):
            for v in VARIANTS:
                samples[v] += timed(lambda v=v, it=it: one(v, it=it), repeat)
            ks = iter(range(10**9))
            samples["graph_call"] += timed(lambda ks=ks, cs=cand_sets, obs=observed: store.causal_scores(
                cs[k := next(ks) % repeat], obs[k], graph=graph), repeat)
            samples["subgraph_call"] += timed(store.causal_graph, repeat)
        p = {k: percentiles(v) for k, v in samples.items()}
        res["results"][str(n)] = {
            "index_kind": idx.info()["spaces"]["fused"]["kind"], "index_build_s": round(build_s, 2),
            "causal_ms": p["causal"], "causal_serial_ms": p["causal_serial"], "baseline_ms": p["baseline"],
            "graph_call_ms": p["graph_call"], "subgraph_call_ms": p["subgraph_call"],
            "claims_per_query": round(n_claims, 1),
            "ratio_p50": round(p["causal"]["p50"] / p["baseline"]["p50"], 3),
            "ratio_p50_serial": round(p["causal_serial"]["p50"] / p["baseline"]["p50"], 3),
            "causal_answer_ms": p["causal_answer"], "baseline_answer_ms": p["baseline_answer"],
            "ratio_p50_answer": round(p["causal_answer"]["p50"] / p["baseline_answer"]["p50"], 3)}
        print(n, res["results"][str(n)], flush=True)
    res["targets"] = {"p50_ms_4k": 20, "p50_ms_100k": 40, "max_ratio": 1.5}
    r = res["results"]
    res["meets"] = {}
    for n, key in ((4000, "4k"), (100000, "100k")):
        if str(n) in r:
            res["meets"][f"p50_{key}"] = r[str(n)]["causal_ms"]["p50"] <= res["targets"][f"p50_ms_{key}"]
            res["meets"][f"ratio_{key}"] = r[str(n)]["ratio_p50"] <= 1.5
    store.drop()
    store.close()
    srv.stop()
    if tuple(sizes) == (4_000, 100_000):
        write("query", res)
    return res


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4_000, 100_000])
    a = ap.parse_args()
    print(json.dumps(main(a.repeat, tuple(a.sizes)), indent=1))

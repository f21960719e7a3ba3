"""Exact inference on the causal graph: latency on the shipped ontology and its growth.

What a query computes (kgrag.causal.inference): P(c | V_I) for every concept (V_I as
soft roots), and the same with do(F = 0) for the 5 strongest V_I concepts (one
batched pass).  Graphs:

- ``ontology``: the shipped ontology's concepts with the synthetic corpus's true
  edges in reader direction (kgrag.synth.model, strengths × 0.8), the graph the
  query benchmark uses;
- ``layered_50`` and ``layered_200``: random layered DAGs (image finding → finding →
  diagnosis, a third of the concepts each), every finding with 1–3 parents among
  image findings and earlier findings, every diagnosis with 2–4 finding parents,
  leaks 0.01–0.1, strengths 0.2–0.9 (seeded), so the degree stays that of the
  ontology while the concept count grows.

V_I: a probability for every image finding and finding, drawn per query.  For each
graph: the junction tree's size, the p50 of the compile (first call on a new
structure, done once per graph and V_I concept set), of posteriors for every
concept, and of posteriors + 5 interventions; of the exact prior marginals of every
concept (nothing observed: the widest case, computed once per graph and process);
then pgmpy 1.0's VariableElimination on the same surgered network (model build +
one query per concept), and the largest difference between the two.  The timed
variants are interleaved.
"""

from __future__ import annotations

import itertools
import random
import time

import numpy as np
from _common import percentiles, timed, write


def layered(n: int, seed: int):
    from kgrag.causal.network import CausalGraph

    rnd = random.Random(seed)
    k = n // 3
    imgs = [f"i{j}" for j in range(k)]
    finds = [f"f{j}" for j in range(k)]
    diags = [f"d{j}" for j in range(n - 2 * k)]
    edges = []
    for j, f in enumerate(finds):
        pool = imgs + finds[:j]
        for u in rnd.sample(pool, min(len(pool), rnd.randint(1, 3))):
            edges.append((u, f, round(rnd.uniform(0.2, 0.9), 3)))
    for d in diags:
        for u in rnd.sample(finds, rnd.randint(2, 4)):
            edges.append((u, d, round(rnd.uniform(0.2, 0.9), 3)))
    leaks = {c: round(rnd.uniform(0.01, 0.1), 3) for c in imgs + finds + diags}
    return CausalGraph.build(leaks, edges), imgs + finds, diags


def ontology():
    from kgrag.causal.network import CausalGraph
    from kgrag.ontology import concepts, ids_with_role
    from kgrag.synth import model as truth

    leaks = {c: truth.LEAKS.get(c, truth.PRIORS.get(c, 0.01)) for c in concepts()}
    g = CausalGraph.build(leaks, [(c, p, s * 0.8) for p, c, s in truth.EDGES])
    visible = sorted(ids_with_role("ImageFinding") + ids_with_role("Finding"))
    return g, visible, [d for d in ids_with_role("Diagnosis") if d != "no_finding"]


def pgmpy_all_marginals(g) -> dict[str, float]:
    from pgmpy.factors.discrete import TabularCPD
    from pgmpy.inference import VariableElimination
    from pgmpy.models import DiscreteBayesianNetwork

    m = DiscreteBayesianNetwork()
    m.add_nodes_from(g.nodes)
    m.add_edges_from([(u, v) for v in g.nodes for u, _ in g.parents_of(v)])
    cpds = []
    for v in g.nodes:
        pa = g.parents_of(v)
        cols = []
        for states in itertools.product((0, 1), repeat=len(pa)):
            p1 = g.cpd(v, {u: float(s) for (u, _), s in zip(pa, states, strict=True)})
            cols.append((1.0 - p1, p1))
        cpds.append(TabularCPD(v, 2, np.array(cols).T, evidence=[u for u, _ in pa] or None,
                               evidence_card=[2] * len(pa) or None))
    m.add_cpds(*cpds)
    ve = VariableElimination(m)
    return {v: float(ve.query([v], show_progress=False).values[1]) for v in g.nodes}


def main(repeat: int = 200, pgmpy_repeat: int = 10) -> dict:
    from kgrag.causal import inference as inf

    rng = np.random.default_rng(0)
    graphs = {"ontology": ontology(), "layered_50": layered(50, 1), "layered_200": layered(200, 2)}
    g0 = graphs["ontology"][0]
    pgmpy_all_marginals(g0)  # pgmpy's first call imports torch: not part of any timing
    res: dict = {"repeat": repeat, "pgmpy_repeat": pgmpy_repeat, "interventions_per_query": 5, "graphs": {}}
    for name, (g, visible, diags) in graphs.items():
        obs_sets = [{c: float(q) for c, q in zip(visible, rng.beta(0.6, 1.4, len(visible)), strict=True)}
                    for _ in range(repeat)]
        do_sets = [[{o: 0} for o in sorted(obs, key=lambda o: -obs[o])[:5]] for obs in obs_sets]
        inf._COMPILED.clear()
        t0 = time.perf_counter()
        inf.posteriors(g, obs_sets[0])
        compile_ms = (time.perf_counter() - t0) * 1000.0
        info = inf.compiled_info(g, observed=visible)
        it = iter(range(10**9))

        def post(g=g, obs_sets=obs_sets, it=it):
            return inf.posteriors(g, obs_sets[next(it) % repeat])

        def post_do(g=g, obs_sets=obs_sets, do_sets=do_sets, diags=diags, it=it):
            j = next(it) % repeat
            return inf.posteriors(g, obs_sets[j]), inf.interventions(g, obs_sets[j], do_sets[j], diags)

        def pgmpy(g=g, obs_sets=obs_sets, it=it):
            return pgmpy_all_marginals(g.surgery(obs_sets[next(it) % repeat]))

        samples: dict[str, list[float]] = {"posteriors": [], "posteriors_and_do": [], "pgmpy": []}
        for _ in range(5):  # interleaved rounds
            samples["posteriors"] += timed(post, repeat // 5)
            samples["posteriors_and_do"] += timed(post_do, repeat // 5)
            samples["pgmpy"] += timed(pgmpy, max(1, pgmpy_repeat // 5))
        inf._PRIORS.clear()
        t0 = time.perf_counter()
        inf.prior_marginals(g)
        priors_ms = (time.perf_counter() - t0) * 1000.0
        obs = obs_sets[0]
        mine = inf.posteriors(g, obs)
        ref = pgmpy_all_marginals(g.surgery(obs))
        p = {k: percentiles(v) for k, v in samples.items()}
        res["graphs"][name] = {
            "concepts": len(g.nodes), "accepted_edges": sum(len(ps) for ps in g.parents.values()), "v_i": len(visible),
            "junction_trees": info, "compile_ms": round(compile_ms, 3), "prior_marginals_once_ms": round(priors_ms, 1),
            "posteriors_ms": p["posteriors"], "posteriors_and_5_do_ms": p["posteriors_and_do"],
            "pgmpy_ve_ms": p["pgmpy"], "pgmpy_over_ours_p50": round(p["pgmpy"]["p50"] / p["posteriors"]["p50"], 1),
            "max_abs_difference_vs_pgmpy": max(abs(mine[v] - ref[v]) for v in ref)}
        print(name, res["graphs"][name], flush=True)
    base = res["graphs"]["ontology"]["posteriors_ms"]["p50"]
    res["growth_p50_vs_ontology"] = {k: round(v["posteriors_ms"]["p50"] / base, 2) for k, v in res["graphs"].items()}
    write("inference", res)
    return res


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--pgmpy-repeat", type=int, default=10)
    a = ap.parse_args()
    print(json.dumps(main(a.repeat, a.pgmpy_repeat), indent=1))

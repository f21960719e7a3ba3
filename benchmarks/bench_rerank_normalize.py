"""Which normalisation of log pG ranks evidence better: the sum of the terms, their mean, or the lift.

The synthetic corpus (``kgrag synth`` reports, no images: this measures the causal
term, not the encoders) is ingested and its graph built on the train split into a
private home (benchmarks/.home-norm).  Every test study is a query; its V_I comes in
the two forms kgrag gets:

- ``image``: a probability for every ImageFinding and Finding concept, drawn from its
  true state like a calibrated head of AUC ≈ 0.85 would give (a logit ~ N(±1.5, 1.3),
  seeded);
- ``findings``: the findings the study's own report states (present 1, absent 0), as
  a ``--findings`` query gives.

Each query is reranked causal-only (α = 0) among 50 candidate reports drawn at random
from the train and val studies (seeded), by log pG with ``normalize="sum"``,
``"mean"`` and ``"lift"`` (log pG(R | V_I) − log pG(R | ∅); kgrag.causal.likelihood,
equal to the Cypher statement to 1e-9), and by a random order as the floor.  For each diagnosis, the top-10 vote (the share of the 10
reports that assert it) is scored against the query's true state: AUC over the
queries, macro-averaged over diagnoses.  Also: the mean Jaccard between the query's
true concepts and each top-10 report's asserted concepts, and how many concepts the
top-10 reports assert (a length prior favours reports that say little).
"""

from __future__ import annotations

import json

import numpy as np
from _common import ROOT, write

CANDIDATES = 50
TOP = 10


def _auc(scores: list[float], labels: list[int]) -> float | None:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def main(n: int = 2000, seed: int = 7) -> dict:
    from kgrag.causal import likelihood
    from kgrag.config import load_settings
    from kgrag.docstore import DocStore
    from kgrag.graph.factory import open_store
    from kgrag.ingest.pipeline import ingest
    from kgrag.kg.build import build_graph
    from kgrag.ontology import ids_with_role
    from kgrag.synth.generate import make_study
    from kgrag.types import ReportCandidate

    home = ROOT / "benchmarks" / ".home-norm"
    corpus = home / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        row, _ = make_study(seed, i, False, with_image=False)
        row["images"] = []
        rows.append(row)
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    s = load_settings(home)
    ingest(s, corpus / "manifest.jsonl", workers=2, progress=False)
    rep = build_graph(s, progress=False)
    store = open_store(s)
    graph = store.causal_graph()
    store.close()
    with DocStore.from_settings(s) as ds:
        asserted = ds.study_concepts()
        mentions = {r["id"]: [m for m in ds.mentions(study_id=r["id"])] for r in rows if r["split"] == "test"}
    visible = sorted(ids_with_role("ImageFinding") + ids_with_role("Finding"))
    diagnoses = [d for d in ids_with_role("Diagnosis") if d != "no_finding"]
    pool = [r["id"] for r in rows if r["split"] in ("train", "val") and r["id"] in asserted]
    truth = {r["id"]: r["labels"] for r in rows}

    def cand(sid: str) -> ReportCandidate:
        a = asserted.get(sid, {})
        return ReportCandidate(sid, sorted(c for c, v in a.items() if v == "present" and c != "no_finding"),
                               sorted(c for c, v in a.items() if v == "absent" and c != "no_finding"))

    rng = np.random.default_rng(seed)
    tests = [r["id"] for r in rows if r["split"] == "test"]
    forms: dict[str, dict[str, dict[str, float]]] = {"image": {}, "findings": {}}
    for q in tests:
        logit = rng.normal(0.0, 1.3, len(visible)) + np.array([1.5 if truth[q].get(c) else -1.5 for c in visible])
        forms["image"][q] = {c: float(1 / (1 + np.exp(-x))) for c, x in zip(visible, logit, strict=True)}
        stated: dict[str, float] = {}
        for m in mentions[q]:
            if m.section == "findings" and m.concept in visible and m.assertion in ("present", "absent"):
                stated[m.concept] = max(stated.get(m.concept, 0.0), 1.0 if m.assertion == "present" else 0.0)
        forms["findings"][q] = stated
    draws = {q: [cand(x) for x in rng.choice(pool, CANDIDATES, replace=False)] for q in tests}

    res: dict = {"n_studies": n, "seed": seed, "n_queries": len(tests), "candidates": CANDIDATES, "top": TOP,
                 "graph": {"accepted": rep.n_accepted, "graph_version": rep.graph_version}, "forms": {}}
    for form, vi in forms.items():
        out = {}
        for order in ("sum", "mean", "lift", "random"):
            votes = {d: [] for d in diagnoses}
            labels = {d: [] for d in diagnoses}
            jacc, sizes = [], []
            for q in tests:
                cands = draws[q]
                if order == "random":
                    top = cands[:TOP]
                else:
                    sc = likelihood.score_reports(graph, cands, vi[q], normalize=order)
                    key = [(-(x.loglik if x.loglik is not None else -1e9), i) for i, x in enumerate(sc)]
                    top = [cands[i] for _, i in sorted(key)[:TOP]]
                true = {c for c, v in truth[q].items() if v and c != "no_finding"}
                for d in diagnoses:
                    votes[d].append(sum(d in c.present for c in top) / TOP)
                    labels[d].append(int(truth[q].get(d, 0)))
                for c in top:
                    claimed = set(c.present)
                    jacc.append(len(true & claimed) / len(true | claimed) if true | claimed else 1.0)
                    sizes.append(len(c.present) + len(c.absent))
            aucs = {d: _auc(votes[d], labels[d]) for d in diagnoses}
            ok = [a for a in aucs.values() if a is not None]
            out[order] = {"vote_macro_auc": round(float(np.mean(ok)), 4),
                          "vote_auc": {d: None if a is None else round(a, 4) for d, a in aucs.items()},
                          "top10_jaccard": round(float(np.mean(jacc)), 4),
                          "top10_claims_per_report": round(float(np.mean(sizes)), 2)}
        out["pool_claims_per_report"] = round(float(np.mean(
            [len(c.present) + len(c.absent) for cs in draws.values() for c in cs])), 2)
        res["forms"][form] = out
        print(form, {k: v if not isinstance(v, dict) else {kk: vv for kk, vv in v.items() if kk != "vote_auc"}
                     for k, v in out.items()}, flush=True)
    res["best_vote_auc"] = max(("sum", "mean", "lift"), key=lambda o: sum(res["forms"][f][o]["vote_macro_auc"] for f in forms))
    res["shipped_default"] = s.retrieval.causal_normalize
    write("rerank_normalize", res)
    return res


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    print(json.dumps(main(a.n, a.seed), indent=1))

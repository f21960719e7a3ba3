"""MCRAG causal rerank (``causal_rerank.v2``).

    Score(R) = (1 − α) · norm(log pG(V_D, V_F | V_I; R)) + α · norm(sim(I, R))

log pG is MCRAG's factorized likelihood of the report's own claims
(:mod:`kgrag.causal.likelihood`, computed by ``score_reports.cypher``): claims in
V_I scored against the image's q, other claims by their noisy-OR CPD given the
report's own findings; the sum or the mean of the terms
(``retrieval.causal_normalize``).  ``norm`` is min–max over the N candidates being
reranked: (x − min) / (max − min), and 0.5 for every candidate when all values are
equal (so a constant term cannot reorder anything).  A candidate whose report
asserts nothing (loglik None) gets the minimum causal term, 0.  α = 1 is
semantic-only retrieval (MCRAG's ablation); α = 0 is causal-only.

Causal filter: a candidate is dropped when it contradicts the query — it denies a
concept V_I gives q ≥ ``contradict_q``, or asserts present a concept whose term
probability (q from V_I, or its CPD given the report's findings) is ≤
``contradict_p``.

:data:`SCHEMES` names every scoring meaning kgrag has had, so the scheme recorded
in an answer's trace says which one produced it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

SCHEMES = {
    "causal_rerank.v1": "mean over asserted concepts of log P(c | V_I), P from noisy-OR over enumerated path "
                        "strengths (double-counts shared edges); retired, no longer computed",
    "causal_rerank.v2": "log pG(V_D, V_F | V_I), MCRAG's factorized likelihood: V_I claims against q, other claims "
                        "by their one-hop noisy-OR CPD given the report's own findings (else q, else the exact prior "
                        "marginal); sum or mean of the terms",
}
SCHEME = "causal_rerank.v2"


def minmax(x: Sequence[float | None]) -> np.ndarray:
    vals = np.array([np.nan if v is None else float(v) for v in x], dtype=np.float64)
    if len(vals) == 0:
        return vals
    ok = ~np.isnan(vals)
    if not ok.any():
        return np.zeros(len(vals))
    lo, hi = np.nanmin(vals), np.nanmax(vals)
    if hi - lo <= 1e-12:
        out = np.full(len(vals), 0.5)
    else:
        out = (vals - lo) / (hi - lo)
    out[~ok] = 0.0
    return out


def causal_scores(loglik: Sequence[float | None], sim: Sequence[float], alpha: float) -> np.ndarray:
    return (1.0 - alpha) * minmax(loglik) + alpha * minmax(sim)


def contradicts(per_concept: Sequence[Mapping], observed: Mapping[str, float], *, contradict_q: float = 0.8,
                contradict_p: float = 0.02) -> str | None:
    """Why a candidate contradicts the query (or None), from its claims' terms."""
    for it in per_concept:
        c, a, p = it["concept"], it["assertion"], it["probability"]
        if a == "absent" and observed.get(c, 0.0) >= contradict_q:
            return f"denies {c}, which the query shows (q={observed[c]:.2f})"
        if a == "present" and p <= contradict_p:
            if it.get("term") == "image" or c in observed:
                return f"asserts {c}, which the query does not show (q={p:.3f})"
            return f"asserts {c}, which its own findings make very unlikely (P={p:.3f})"
    return None

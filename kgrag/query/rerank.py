"""MCRAG causal rerank (``causal_rerank.v1``).

    Score(R) = (1 − α) · norm(log pG(V_D, V_F | V_I; R)) + α · norm(sim(I, R))

``norm`` is min–max over the N candidates being reranked: (x − min) / (max − min),
and 0.5 for every candidate when all values are equal (so a constant term cannot
reorder anything).  A candidate whose report asserts nothing the graph can score
(loglik None) gets the minimum causal term, 0.  α = 1 is semantic-only
retrieval (MCRAG's ablation); α = 0 is causal-only.

Causal filter: a candidate is dropped when it contradicts the image findings —
it denies a concept the query image shows with q ≥ ``contradict_q`` or asserts
present a concept whose graph probability is ≤ ``contradict_p``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

SCHEME = "causal_rerank.v1"


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
    for it in per_concept:
        c, a, p = it["concept"], it["assertion"], it["probability"]
        if a == "absent" and observed.get(c, 0.0) >= contradict_q:
            return f"denies {c}, which the image shows (q={observed[c]:.2f})"
        if a == "present" and p <= contradict_p:
            return f"asserts {c}, which the graph makes very unlikely (P={p:.3f})"
    return None

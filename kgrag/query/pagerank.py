"""Personalized PageRank (power iteration, NumPy) for coherence reranking.

MMedRAG++ Graph-RAG rerank: nodes are the retrieved candidates, edge weights
their cosine similarities (negatives clipped to 0, no self-loops); the
teleport vector is the candidates' query similarity (clipped, normalized).
Dangling nodes (no out-weight) jump by the teleport vector — the rule
networkx.pagerank uses with ``dangling=personalization``.
"""

from __future__ import annotations

import numpy as np


def personalized_pagerank(W: np.ndarray, personalization: np.ndarray, damping: float = 0.85, tol: float = 1e-12,
                          max_iter: int = 1000) -> np.ndarray:
    """``W[i, j]``: weight of the edge i → j.  Returns scores summing to 1."""
    W = np.asarray(W, np.float64)
    n = W.shape[0]
    if n == 0:
        return np.zeros(0)
    p = np.clip(np.asarray(personalization, np.float64), 0, None)
    p = p / p.sum() if p.sum() > 0 else np.full(n, 1.0 / n)
    out = W.sum(axis=1)
    dangling = out == 0
    P = np.divide(W, out[:, None], out=np.zeros_like(W), where=out[:, None] > 0)
    x = p.copy()
    for _ in range(max_iter):
        nxt = damping * (x @ P + x[dangling].sum() * p) + (1 - damping) * p
        if np.abs(nxt - x).sum() < n * tol:
            return nxt
        x = nxt
    return x


def similarity_graph(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, np.float64)
    W = np.clip(v @ v.T, 0, None)
    np.fill_diagonal(W, 0.0)
    return W

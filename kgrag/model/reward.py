"""MMedRAG++ RAG-PRM reward model: how useful a context is for a query.

A small MLP on [q, d, q⊙d] (q: the query's shared-space vector — image, or text
when there is no image; d: the context report's text vector) trained with the
pairwise Bradley–Terry loss

    L = −log σ(r(q, d⁺) − r(q, d⁻)) = softplus(r(q, d⁻) − r(q, d⁺))

on triples where d⁺ shares strictly more present concepts with the query study
than d⁻ (Jaccard of present-concept sets; ties are not used).

The filter threshold τ is chosen on held-out (val) pairs: a context is *relevant*
when its Jaccard with the query study is ≥ 0.5 (the fusion positive definition)
and τ maximises Youden's J = TPR − FPR of ``reward ≥ τ``.  τ is recorded in the
model manifest; contexts below it are dropped at query time when the filter is on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


class RewardModel(nn.Module):
    def __init__(self, dim: int = 256, hidden: int = 128) -> None:
        super().__init__()
        self.dim, self.hidden = dim, hidden
        self.net = nn.Sequential(nn.Linear(3 * dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([q, d, q * d], dim=-1)).squeeze(-1)


def pairwise_loss(r_pos: torch.Tensor, r_neg: torch.Tensor) -> torch.Tensor:
    """Mean Bradley–Terry loss −log σ(r⁺ − r⁻) (softplus form, numerically stable)."""
    return torch.nn.functional.softplus(-(r_pos - r_neg)).mean()


def pairwise_loss_reference(r_pos: Sequence[float], r_neg: Sequence[float]) -> float:
    """Pure Python: mean of −log(1 / (1 + exp(−(a − b))))."""
    vals = [math.log1p(math.exp(-(a - b))) for a, b in zip(r_pos, r_neg, strict=True)]
    return sum(vals) / len(vals)


def youden_threshold(scores: Sequence[float], relevant: Sequence[bool]) -> tuple[float, float, float]:
    """(τ, TPR, FPR) for the τ among the scores maximizing TPR − FPR of ``score ≥ τ``;
    ties in J go to the higher τ (the stricter filter).  Needs both classes."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(relevant, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("youden_threshold needs relevant and irrelevant examples")
    best = (-2.0, 0.0, 0.0, 0.0)
    for t in np.unique(s)[::-1]:
        keep = s >= t
        tpr, fpr = float((keep & y).sum()) / n_pos, float((keep & ~y).sum()) / n_neg
        if tpr - fpr > best[0] + 1e-12:  # ties (to rounding) keep the higher τ
            best = (tpr - fpr, float(t), tpr, fpr)
    return best[1], best[2], best[3]


def train_reward(q: np.ndarray, d_pos: np.ndarray, d_neg: np.ndarray, *, dim: int, epochs: int = 5, seed: int = 0,
                 lr: float = 1e-3, batch: int = 256, hidden: int = 128) -> tuple[RewardModel, float]:
    """Fit on (query, better, worse) vector triples; returns the model and its
    pairwise accuracy on the training triples."""
    torch.manual_seed(seed)
    m = RewardModel(dim, hidden)
    opt = torch.optim.AdamW(m.parameters(), lr=lr)
    Q, P, N = (torch.tensor(np.asarray(x, np.float32).reshape(-1, dim)) for x in (q, d_pos, d_neg))
    n = len(Q)
    gen = torch.Generator().manual_seed(seed)
    m.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            loss = pairwise_loss(m(Q[idx], P[idx]), m(Q[idx], N[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    m.eval()
    return m, pair_accuracy(m, Q, P, N)


def pair_accuracy(m: RewardModel, q, d_pos, d_neg) -> float:
    """Fraction of triples where r(q, d⁺) > r(q, d⁻)."""
    Q, P, N = (torch.as_tensor(np.asarray(x, np.float32)) for x in (q, d_pos, d_neg))
    if len(Q) == 0:
        return float("nan")
    with torch.no_grad():
        return float((m(Q, P) > m(Q, N)).float().mean())


def score(m: RewardModel, q: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Rewards of row-aligned (q, d) pairs; a single query row is broadcast over d."""
    Q = torch.as_tensor(np.asarray(q, np.float32))
    D = torch.as_tensor(np.asarray(d, np.float32))
    if Q.ndim == 1:
        Q = Q[None]
    if Q.shape[0] == 1 and D.shape[0] != 1:
        Q = Q.expand(D.shape[0], -1)
    m.eval()
    with torch.no_grad():
        return m(Q, D).numpy().astype(np.float32)

"""MMedRAG++ RAG-PRM reward model: scores how useful a context is for a query.

A small MLP on [q, d, q⊙d] trained with a pairwise (Bradley–Terry) loss
−log σ(r(q, d⁺) − r(q, d⁻)) on pairs where d⁺ shares more present concepts with
the query study than d⁻ (Jaccard).  Contexts scoring below a threshold are
filtered out at query time.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class RewardModel(nn.Module):
    def __init__(self, dim: int = 256, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3 * dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([q, d, q * d], dim=-1)).squeeze(-1)


def pairwise_loss(r_pos: torch.Tensor, r_neg: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.softplus(-(r_pos - r_neg)).mean()


def train_reward(q: np.ndarray, d_pos: np.ndarray, d_neg: np.ndarray, *, dim: int, epochs: int = 5, seed: int = 0,
                 lr: float = 1e-3, batch: int = 256) -> tuple[RewardModel, float]:
    """Returns the model and its pairwise accuracy on the training pairs."""
    torch.manual_seed(seed)
    m = RewardModel(dim)
    opt = torch.optim.AdamW(m.parameters(), lr=lr)
    Q, P, N = (torch.tensor(x, dtype=torch.float32) for x in (q, d_pos, d_neg))
    n = len(Q)
    for _ in range(epochs):
        perm = torch.randperm(n)
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            loss = pairwise_loss(m(Q[idx], P[idx]), m(Q[idx], N[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = float((m(Q, P) > m(Q, N)).float().mean()) if n else 0.0
    return m, acc

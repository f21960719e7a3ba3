"""MR-RAG relevance fusion.

    relevance = α·sim(img_q, text_d) + β·sim(img_q, img_d) + γ·sim(text_q, text_d)

α, β, γ = softmax(w) are learned with InfoNCE: for a query study, positives are
candidates whose present-concept sets overlap it with Jaccard ≥ 0.5 (two normal
studies — no present concept — also count as positives); the loss is
−log Σ_pos exp(r/T) / Σ_all exp(r/T) over a sampled candidate set.
When a query lacks a modality the missing terms are dropped and the remaining
weights renormalized (text-only query: relevance = sim(text_q, text_d)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class FusionWeights:
    alpha: float = 1 / 3  # image_text
    beta: float = 1 / 3  # image_image
    gamma: float = 1 / 3  # text_text

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def effective(self, has_image: bool, has_text: bool) -> tuple[float, float, float]:
        a, b, g = (self.alpha if has_image else 0.0, self.beta if has_image else 0.0, self.gamma if has_text else 0.0)
        s = a + b + g
        if s <= 0:
            return (0.0, 0.0, 0.0)
        return (a / s, b / s, g / s)


def fuse(w: FusionWeights, s_it: np.ndarray | None, s_ii: np.ndarray | None, s_tt: np.ndarray | None) -> np.ndarray:
    a, b, g = w.effective(s_it is not None or s_ii is not None, s_tt is not None)
    out = 0.0
    for wt, s in ((a, s_it), (b, s_ii), (g, s_tt)):
        if s is not None and wt:
            out = out + wt * np.asarray(s, np.float32)
    return np.asarray(out, np.float32)


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def learn_weights(sims: np.ndarray, positive: np.ndarray, *, steps: int = 300, lr: float = 0.05,
                  temperature: float = 0.05, seed: int = 0) -> FusionWeights:
    """``sims``: (Q, C, 3) similarities [image_text, image_image, text_text] of each
    query to C candidates; ``positive``: (Q, C) bool.  Returns the learned weights."""
    import torch

    torch.manual_seed(seed)
    s = torch.tensor(sims, dtype=torch.float32)
    pos = torch.tensor(positive, dtype=torch.bool)
    keep = pos.any(dim=1) & (~pos).any(dim=1)
    s, pos = s[keep], pos[keep]
    w = torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr)
    for _ in range(steps):
        r = (s * torch.softmax(w, 0)).sum(-1) / temperature
        lse_all = torch.logsumexp(r, dim=1)
        lse_pos = torch.logsumexp(r.masked_fill(~pos, -1e9), dim=1)
        loss = (lse_all - lse_pos).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    a, b, g = torch.softmax(w.detach(), 0).tolist()
    return FusionWeights(a, b, g)


def overlap_positives(query_sets: Sequence[set[str]], cand_sets: Sequence[set[str]], threshold: float = 0.5) -> np.ndarray:
    return np.array([[jaccard(q, c) >= threshold for c in cand_sets] for q in query_sets], dtype=bool)

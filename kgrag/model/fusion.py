"""MR-RAG relevance fusion.

    relevance = α·sim(img_q, text_d) + β·sim(img_q, img_d) + γ·sim(text_q, text_d)

sim is the cosine (inner product of L2-normalized shared-space vectors).
α, β, γ = softmax(w) (so each is ≥ 0 and they sum to 1) are learned with a
multi-positive InfoNCE: for a query study, positives are candidates whose
present-concept sets (``no_finding`` excluded) have Jaccard ≥ 0.5 with the
query's; two normal studies (both sets empty) count as positives (Jaccard 1).
The loss is −log Σ_pos exp(r/T) / Σ_all exp(r/T) over a sampled candidate set,
T = 0.05 fixed; queries with no positive or no negative are skipped.
When a query lacks a modality the missing terms are dropped and the remaining
weights renormalized: a text-only query uses γ alone (relevance =
sim(text_q, text_d)); an image-only query uses α/(α+β) and β/(α+β).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

log = logging.getLogger(__name__)
POSITIVE_JACCARD = 0.5
FUSION_TEMPERATURE = 0.05


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


def relevance_reference(w: FusionWeights, s_it: float | None, s_ii: float | None, s_tt: float | None) -> float:
    """Pure Python fused relevance of one candidate (the oracle for :func:`fuse`)."""
    has_image = s_it is not None or s_ii is not None
    terms = [(w.alpha if has_image else 0.0, s_it), (w.beta if has_image else 0.0, s_ii), (w.gamma if s_tt is not None else 0.0, s_tt)]
    total = sum(wt for wt, _ in terms)
    if total <= 0:
        return 0.0
    return sum(wt / total * s for wt, s in terms if s is not None and wt)


def jaccard(a: set[str], b: set[str]) -> float:
    """|a ∩ b| / |a ∪ b|; 1.0 for two empty sets (two normal studies agree)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def fusion_loss(w_logits: np.ndarray, sims: np.ndarray, positive: np.ndarray,
                temperature: float = FUSION_TEMPERATURE) -> tuple[float, np.ndarray]:
    """Multi-positive InfoNCE of the fused relevance and its gradient w.r.t. the
    softmax logits (NumPy, float64).  Rows without a positive or a negative must be
    removed by the caller."""
    s = np.asarray(sims, np.float64)
    pos = np.asarray(positive, bool)
    w = np.asarray(w_logits, np.float64)
    v = np.exp(w - w.max())
    v /= v.sum()
    r = (s @ v) / temperature  # (Q, C)
    m = r.max(axis=1, keepdims=True)
    lse_all = m[:, 0] + np.log(np.exp(r - m).sum(axis=1))
    rp = np.where(pos, r, -np.inf)
    mp = rp.max(axis=1, keepdims=True)
    lse_pos = mp[:, 0] + np.log(np.exp(rp - mp).sum(axis=1))
    q = len(r)
    loss = float(np.mean(lse_all - lse_pos))
    g_r = (np.exp(r - lse_all[:, None]) - np.where(pos, np.exp(r - lse_pos[:, None]), 0.0)) / q
    g_v = np.einsum("qc,qck->k", g_r, s) / temperature
    g_w = v * (g_v - v @ g_v)  # softmax Jacobian
    return loss, g_w


def learn_weights(sims: np.ndarray, positive: np.ndarray, *, steps: int = 300, lr: float = 0.05,
                  temperature: float = FUSION_TEMPERATURE, seed: int = 0) -> FusionWeights:
    """``sims``: (Q, C, 3) similarities [image_text, image_image, text_text] of each
    query to C candidates; ``positive``: (Q, C) bool.  Adam (β = 0.9, 0.999) on the
    softmax logits from equal weights, ``steps`` full-batch steps of :func:`fusion_loss`
    (deterministic; ``seed`` is recorded for interface symmetry).  Returns the weights."""
    del seed  # full-batch and deterministic
    s = np.asarray(sims, np.float64)
    pos = np.asarray(positive, bool)
    keep = pos.any(axis=1) & (~pos).any(axis=1)
    s, pos = s[keep], pos[keep]
    if len(s) == 0:
        log.warning("no query has both a positive and a negative candidate; fusion weights stay equal")
        return FusionWeights()
    w = np.zeros(3)
    m1, m2 = np.zeros(3), np.zeros(3)
    b1, b2, eps = 0.9, 0.999, 1e-8
    for t in range(1, steps + 1):
        _, g = fusion_loss(w, s, pos, temperature)
        m1 = b1 * m1 + (1 - b1) * g
        m2 = b2 * m2 + (1 - b2) * g * g
        w -= lr * (m1 / (1 - b1**t)) / (np.sqrt(m2 / (1 - b2**t)) + eps)
    v = np.exp(w - w.max())
    a, b, g = (v / v.sum()).tolist()
    return FusionWeights(a, b, g)


def overlap_positives(query_sets: Sequence[set[str]], cand_sets: Sequence[set[str]],
                      threshold: float = POSITIVE_JACCARD) -> np.ndarray:
    return np.array([[jaccard(q, c) >= threshold for c in cand_sets] for q in query_sets], dtype=bool)

"""MR-RAG relevance fusion, fitted on the query forms users send.

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
sim(text_q, text_d)); an image-only query uses α/(α+β) and β/(α+β).  The fit
sees the same renormalization (``available`` masks per query), so it optimises
the relevance that is used.

**Query forms** (:data:`FORMS`): what the text side of a query is — nothing
(``image``), a yes/no question (``image+question``), a findings text
(``image+findings``), or text alone (``findings``, ``question``,
``findings+question``: γ only, nothing to weigh).  Weights are fitted per form
with an image (``FusionWeights.forms``) and jointly over them (the top-level
α/β/γ, used for a form without its own fit); the query pipeline takes the
weights of the form it is answering (:meth:`FusionWeights.for_form`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
POSITIVE_JACCARD = 0.5
FUSION_TEMPERATURE = 0.05
MIN_FUSION_TEMPERATURE = 1e-3  # a learned temperature is clamped here
#: query form → (has image, has text)
FORMS: dict[str, tuple[bool, bool]] = {
    "image": (True, False), "image+question": (True, True), "image+findings": (True, True),
    "findings": (False, True), "question": (False, True), "findings+question": (False, True),
}
#: forms whose weights can be fitted (with an image; text alone has one term)
WEIGHTED_FORMS = ("image", "image+question", "image+findings")


def form_of(has_image: bool, question: bool, findings: bool) -> str:
    """The query form of a query with (or without) an image, a question and a findings text."""
    if has_image:
        return "image+findings" if findings else "image+question" if question else "image"
    if findings:
        return "findings+question" if question else "findings"
    return "question"


def available(form: str) -> np.ndarray:
    """(image_text, image_image, text_text) terms a query of ``form`` has."""
    has_image, has_text = FORMS[form]
    return np.array([has_image, has_image, has_text], bool)


@dataclass
class FusionWeights:
    alpha: float = 1 / 3  # image_text
    beta: float = 1 / 3  # image_image
    gamma: float = 1 / 3  # text_text
    forms: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # per-form fits

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma}
        if self.forms:
            d["forms"] = {k: list(v) for k, v in self.forms.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FusionWeights:
        forms = {k: (float(v[0]), float(v[1]), float(v[2])) for k, v in (d.get("forms") or {}).items()}
        return cls(float(d["alpha"]), float(d["beta"]), float(d["gamma"]), forms)

    def for_form(self, form: str | None) -> FusionWeights:
        """The weights fitted for ``form`` (the joint fit when that form has none)."""
        if form and form in self.forms:
            a, b, g = self.forms[form]
            return FusionWeights(a, b, g)
        return FusionWeights(self.alpha, self.beta, self.gamma)

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


def jaccard_matrix(a: Sequence[set[str]], b: Sequence[set[str]]) -> np.ndarray:
    """(len(a), len(b)) Jaccard of every pair (vectorized :func:`jaccard`; two empty sets: 1)."""
    vocab = sorted(set().union(*a, *b)) if (a or b) else []
    col = {c: j for j, c in enumerate(vocab)}

    def onehot(sets: Sequence[set[str]]) -> np.ndarray:
        m = np.zeros((len(sets), max(1, len(vocab))), np.float32)
        for i, s in enumerate(sets):
            for c in s:
                m[i, col[c]] = 1.0
        return m

    A, B = onehot(a), onehot(b)
    inter = A @ B.T
    union = A.sum(1)[:, None] + B.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1.0), 1.0).astype(np.float64)


def fusion_loss(w_logits: np.ndarray, sims: np.ndarray, positive: np.ndarray,
                temperature: float = FUSION_TEMPERATURE, avail: np.ndarray | None = None,
                *, grad_temperature: bool = False) -> tuple[float, np.ndarray] | tuple[float, np.ndarray, float]:
    """Multi-positive InfoNCE of the fused relevance and its gradient w.r.t. the
    softmax logits (NumPy, float64).  ``avail`` (Q, 3) bool marks the terms each
    query has (default: all); the weights of a query are renormalized over them,
    v_eff = v⊙m / (v·m), as at query time.  With ``grad_temperature`` the gradient
    w.r.t. τ = log(1/T) comes third.  Rows without a positive or a negative, or
    without any term, must be removed by the caller."""
    s = np.asarray(sims, np.float64)
    pos = np.asarray(positive, bool)
    w = np.asarray(w_logits, np.float64)
    v = np.exp(w - w.max())
    v /= v.sum()
    mk = np.ones((len(s), 3)) if avail is None else np.asarray(avail, np.float64)
    den = mk @ v  # (Q,)
    v_eff = mk * v / den[:, None]  # (Q, 3)
    r = np.einsum("qck,qk->qc", s, v_eff) / temperature  # (Q, C)
    m = r.max(axis=1, keepdims=True)
    lse_all = m[:, 0] + np.log(np.exp(r - m).sum(axis=1))
    rp = np.where(pos, r, -np.inf)
    mp = rp.max(axis=1, keepdims=True)
    lse_pos = mp[:, 0] + np.log(np.exp(rp - mp).sum(axis=1))
    q = len(r)
    loss = float(np.mean(lse_all - lse_pos))
    g_r = (np.exp(r - lse_all[:, None]) - np.where(pos, np.exp(r - lse_pos[:, None]), 0.0)) / q
    G = np.einsum("qc,qck->qk", g_r, s) / temperature  # dL/dv_eff
    # dv_eff_qk/dv_j = m_qk δ_kj / D_q − v_k m_qk m_qj / D_q²
    g_v = (mk / den[:, None] * (G - (G * v_eff).sum(axis=1, keepdims=True))).sum(axis=0)
    g_w = v * (g_v - v @ g_v)  # softmax Jacobian
    if grad_temperature:
        return loss, g_w, float((g_r * r).sum())  # r = e^τ·u, so dr/dτ = r
    return loss, g_w


def learn_weights(sims: np.ndarray, positive: np.ndarray, *, steps: int = 300, lr: float = 0.05,
                  temperature: float | None = FUSION_TEMPERATURE, seed: int = 0,
                  avail: np.ndarray | None = None, fit: dict | None = None) -> FusionWeights:
    """``sims``: (Q, C, 3) similarities [image_text, image_image, text_text] of each
    query to C candidates; ``positive``: (Q, C) bool; ``avail`` (Q, 3) the terms each
    query has (its form, see :func:`available`).  Adam (β = 0.9, 0.999) on the
    softmax logits from equal weights, ``steps`` full-batch steps of :func:`fusion_loss`
    (deterministic; ``seed`` is recorded for interface symmetry).  ``temperature=None``
    learns T with the weights (from T = 0.05): the terms' similarities have different
    spreads, and with T fixed the fit would favour the widest-spread term for its
    scale rather than its ranking.  ``fit``, when given, receives the final loss and T.
    Returns the weights."""
    del seed  # full-batch and deterministic
    s = np.asarray(sims, np.float64)
    pos = np.asarray(positive, bool)
    m = np.ones((len(s), 3), bool) if avail is None else np.asarray(avail, bool)
    keep = pos.any(axis=1) & (~pos).any(axis=1) & m.any(axis=1)
    s, pos, m = s[keep], pos[keep], m[keep]
    if len(s) == 0:
        log.warning("no query has both a positive and a negative candidate; fusion weights stay equal")
        return FusionWeights()
    learn_t = temperature is None
    x = np.zeros(4)  # softmax logits of α, β, γ, then τ = log(1/T)
    x[3] = np.log(1.0 / (FUSION_TEMPERATURE if learn_t else float(temperature)))
    m1, m2 = np.zeros(4), np.zeros(4)
    b1, b2, eps = 0.9, 0.999, 1e-8
    loss = float("nan")
    for t in range(1, steps + 1):
        if learn_t:
            loss, gw, gt = fusion_loss(x[:3], s, pos, float(np.exp(-x[3])), m, grad_temperature=True)
        else:
            loss, gw = fusion_loss(x[:3], s, pos, float(temperature), m)
            gt = 0.0
        g = np.append(gw, gt)
        m1 = b1 * m1 + (1 - b1) * g
        m2 = b2 * m2 + (1 - b2) * g * g
        x -= lr * (m1 / (1 - b1**t)) / (np.sqrt(m2 / (1 - b2**t)) + eps)
        x[3] = min(x[3], np.log(1.0 / MIN_FUSION_TEMPERATURE))
    v = np.exp(x[:3] - x[:3].max())
    a, b, g = (v / v.sum()).tolist()
    if fit is not None:
        fit.update({"loss": loss, "temperature": float(np.exp(-x[3])), "queries": int(len(s))})
    return FusionWeights(a, b, g)


def overlap_positives(query_sets: Sequence[set[str]], cand_sets: Sequence[set[str]],
                      threshold: float = POSITIVE_JACCARD) -> np.ndarray:
    return np.array([[jaccard(q, c) >= threshold for c in cand_sets] for q in query_sets], dtype=bool)


def recall_at_k(relevance: np.ndarray, positive: np.ndarray, k: int = 10) -> float:
    """Mean over queries with at least one positive of |positives in the top k| /
    min(k, |positives|): 1.0 when the top k is as full of relevant studies as it can
    be.  ``relevance``, ``positive``: (Q, C); ties are broken by candidate order."""
    rel = np.asarray(relevance, np.float64)
    pos = np.asarray(positive, bool)
    n_pos = pos.sum(axis=1)
    keep = n_pos > 0
    if not keep.any():
        return float("nan")
    top = np.argsort(-rel[keep], axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(pos[keep], top, axis=1).sum(axis=1)
    return float(np.mean(hits / np.minimum(k, n_pos[keep])))


def recall_at_k_reference(relevance, positive, k: int = 10) -> float:
    """Pure Python :func:`recall_at_k`."""
    vals = []
    for rel, pos in zip(relevance, positive, strict=True):
        n = sum(bool(p) for p in pos)
        if n == 0:
            continue
        order = sorted(range(len(rel)), key=lambda j: (-float(rel[j]), j))[:k]
        vals.append(sum(bool(pos[j]) for j in order) / min(k, n))
    return sum(vals) / len(vals) if vals else float("nan")


def fused_relevance(w: FusionWeights, sims: np.ndarray, form: str) -> np.ndarray:
    """(Q, C) relevance of a form's (Q, C, 3) similarities under ``w`` (renormalized
    over the terms the form has, like :func:`fuse`)."""
    m = available(form).astype(np.float64)
    v = np.array([w.alpha, w.beta, w.gamma]) * m
    s = v.sum()
    return np.asarray(sims, np.float64) @ (v / s if s > 0 else v)

"""Calibration of the findings head: Platt or temperature scaling per concept, fitted
on val, and the expected calibration error (ECE) that measures it.

For a concept with head logit z, the calibrated probability is

    q = σ(a·z + b)

Platt scaling fits (a, b); temperature scaling fits a = 1/T with b = 0.  Both
minimise the mean negative log-likelihood of the val labels (labels masked out of
training — hedged mentions — are left out here too), by Newton's method on a
convex objective with a small ridge λ·((a − 1)² + b²) (λ = 1e-3) that keeps it
finite when val separates perfectly.  ``a`` is clipped at 0 from below: a
calibration never reverses the head's ranking, so the concept's AUC is the
head's own.

ECE: the probabilities are cut into ``bins`` equal-width bins on [0, 1] (a value
of exactly 1 goes in the last); ECE = Σ_b |B_b|/n · |mean(y in B_b) − mean(q in B_b)|.

An honest after-calibration ECE cannot be measured on the data the scaling was
fitted on, so :func:`cross_fitted` fits on one half of val and measures on the
other (and the reverse) and reports the pooled out-of-fold ECE; the scaling that
ships is then refitted on all of val.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

METHODS = ("platt", "temperature")
RIDGE = 1e-3
ECE_BINS = 10


@dataclass
class Scaling:
    """q = σ(a·z + b) for one concept."""

    a: float = 1.0
    b: float = 0.0
    method: str = "platt"

    def apply(self, logits: np.ndarray) -> np.ndarray:
        return sigmoid(self.a * np.asarray(logits, np.float64) + self.b)

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


def ece(y: Sequence[float], q: Sequence[float], bins: int = ECE_BINS) -> float:
    """Expected calibration error with equal-width bins (NumPy)."""
    y = np.asarray(y, np.float64)
    q = np.asarray(q, np.float64)
    if len(y) == 0:
        return float("nan")
    idx = np.minimum((q * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.sum() / len(y) * abs(y[sel].mean() - q[sel].mean())
    return float(total)


def ece_reference(y: Sequence[float], q: Sequence[float], bins: int = ECE_BINS) -> float:
    """Pure Python ECE (the oracle for :func:`ece`)."""
    groups: dict[int, list[tuple[float, float]]] = {}
    for yi, qi in zip(y, q, strict=True):
        groups.setdefault(min(int(qi * bins), bins - 1), []).append((float(yi), float(qi)))
    n = sum(len(g) for g in groups.values())
    return sum(len(g) / n * abs(sum(a for a, _ in g) / len(g) - sum(b for _, b in g) / len(g)) for g in groups.values())


def nll(y: np.ndarray, z: np.ndarray, a: float, b: float) -> float:
    """Mean negative log-likelihood of labels ``y`` under σ(a·z + b)."""
    t = a * np.asarray(z, np.float64) + b
    y = np.asarray(y, np.float64)
    return float(np.mean(np.logaddexp(0.0, t) - y * t))


def fit(z: Sequence[float], y: Sequence[float], method: str = "platt", *, steps: int = 100,
        ridge: float = RIDGE) -> Scaling:
    """Fit the scaling of one concept on (logit, label) pairs by damped Newton steps."""
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")
    z = np.asarray(z, np.float64)
    y = np.asarray(y, np.float64)
    if len(z) == 0 or y.min() == y.max():
        return Scaling(1.0, 0.0, method)  # one class only: nothing to fit, keep the head's probabilities
    free = 2 if method == "platt" else 1
    w = np.array([1.0, 0.0])

    def objective(v: np.ndarray) -> float:
        return nll(y, z, v[0], v[1]) + ridge * ((v[0] - 1.0) ** 2 + v[1] ** 2)

    for _ in range(steps):
        p = sigmoid(w[0] * z + w[1])
        r = p - y
        g = np.array([np.mean(r * z) + 2 * ridge * (w[0] - 1.0), np.mean(r) + 2 * ridge * w[1]])
        s = p * (1 - p)
        h = np.array([[np.mean(s * z * z), np.mean(s * z)], [np.mean(s * z), np.mean(s)]]) + 2 * ridge * np.eye(2)
        g, h = g[:free], h[:free, :free]
        step = np.linalg.solve(h, g)
        cur, t = objective(w), 1.0
        while t > 1e-6:  # backtracking: Newton on a convex objective, never uphill
            cand = w.copy()
            cand[:free] -= t * step
            if objective(cand) <= cur:
                break
            t *= 0.5
        if t <= 1e-6:
            break
        w = cand
        if np.abs(t * step).max() < 1e-10:
            break
    return Scaling(float(max(w[0], 0.0)), float(w[1]), method)


def cross_fitted(z: Sequence[float], y: Sequence[float], method: str = "platt", *, seed: int = 0,
                 bins: int = ECE_BINS) -> tuple[float, float]:
    """(ECE of the raw head, out-of-fold ECE after calibration) with 2-fold cross-fitting.

    The folds are a seeded permutation split in two halves, stratified by label so both
    halves hold both classes when the data does."""
    z = np.asarray(z, np.float64)
    y = np.asarray(y, np.float64)
    raw = ece(y, sigmoid(z), bins)
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(y), np.int64)
    for cls in (0.0, 1.0):
        idx = np.flatnonzero(y == cls)
        idx = idx[rng.permutation(len(idx))]
        fold[idx[1::2]] = 1
    out = np.zeros(len(y))
    for f in (0, 1):
        tr, te = fold != f, fold == f
        if te.any():
            out[te] = fit(z[tr], y[tr], method).apply(z[te])
    return raw, ece(y, out, bins)


def is_finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)

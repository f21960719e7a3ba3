"""Symmetric InfoNCE (CLIP loss) with a learned temperature, and its NumPy reference.

For a batch of n matched pairs (image i ↔ report i) with L2-normalized
embeddings, logits = (img · txtᵀ) / T and

    L = ½ [ CE(logits, diag) + CE(logitsᵀ, diag) ]

where CE is the mean cross-entropy of each row against its diagonal entry.  The
temperature is learned on a log scale: the parameter is log(1/T), clamped so
that T ≥ 0.01.
"""

from __future__ import annotations

import math

import numpy as np

MAX_LOG_INV_T = math.log(100.0)


def info_nce_reference(img: np.ndarray, txt: np.ndarray, temperature: float) -> float:
    """Pure NumPy: mean of the image→text and text→image cross-entropies of the
    similarity matrix img·txtᵀ / T, with matching pairs on the diagonal."""
    logits = (np.asarray(img, np.float64) @ np.asarray(txt, np.float64).T) / temperature

    def ce(m: np.ndarray) -> float:
        m = m - m.max(axis=1, keepdims=True)
        logp = m - np.log(np.exp(m).sum(axis=1, keepdims=True))
        return float(-np.mean(np.diag(logp)))

    return 0.5 * (ce(logits) + ce(logits.T))


def info_nce(img, txt, log_inv_t):
    """Torch: ``log_inv_t`` is the learned log of 1/T (clamped to T ≥ 0.01)."""
    import torch
    from torch.nn import functional as F

    scale = log_inv_t.clamp(max=MAX_LOG_INV_T).exp()
    logits = scale * img @ txt.t()
    target = torch.arange(img.shape[0], device=img.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def temperature(log_inv_t) -> float:
    """The temperature T the loss uses for parameter value ``log_inv_t``."""
    v = float(log_inv_t.detach()) if hasattr(log_inv_t, "detach") else float(log_inv_t)
    return 1.0 / math.exp(min(v, MAX_LOG_INV_T))

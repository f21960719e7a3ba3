"""A memo in front of the retrieval model, so each test image and question is encoded once.

An evaluation asks the same queries once per variant (rerank, α, K, graph); only the
encoders' outputs repeat, and they are most of a query's cost on a CPU (the image
CNN runs twice per query: embedding and findings head).  :class:`MemoModel` wraps a
loaded :class:`~kgrag.model.retrieval_model.RetrievalModel` and answers
``encode_images``, ``findings_probs`` and ``encode_texts`` from a cache keyed by the
image pixels (SHA-1 of the array) or the text; everything else is the model's own.
The model is in eval mode and the memo passes the pipeline's own calls through on a
miss (one study's images at a time), so a cached answer is the very array the
pipeline computed for the first variant.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def _key(img: np.ndarray) -> str:
    a = np.ascontiguousarray(img)
    return hashlib.sha1(a.tobytes() + str((a.shape, a.dtype.str)).encode()).hexdigest()


class MemoModel:
    def __init__(self, model: Any) -> None:
        self._model = model
        self._emb: dict[str, np.ndarray] = {}
        self._probs: dict[str, dict[str, float]] = {}
        self._text: dict[str, np.ndarray] = {}
        self.counts = {"image_hits": 0, "image_misses": 0}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    @property
    def wrapped(self) -> Any:
        return self._model

    def rebind(self, model: Any) -> MemoModel:
        """The same cache in front of another loaded copy of the same model (same fingerprint)."""
        if getattr(model, "fingerprint", None) != getattr(self._model, "fingerprint", None):
            raise ValueError("MemoModel.rebind: the models differ")
        out = MemoModel(model)
        out._emb, out._probs, out._text, out.counts = self._emb, self._probs, self._text, self.counts
        return out

    def encode_images(self, images: list[np.ndarray], batch_size: int = 256) -> np.ndarray:
        keys = [_key(x) for x in images]
        miss = [i for i, k in enumerate(keys) if k not in self._emb]
        self.counts["image_hits"] += len(keys) - len(miss)
        self.counts["image_misses"] += len(miss)
        if miss:
            emb = self._model.encode_images([images[i] for i in miss], batch_size)
            for j, i in enumerate(miss):
                self._emb[keys[i]] = emb[j]
        if not keys:
            return self._model.encode_images([], batch_size)
        return np.stack([self._emb[k] for k in keys])

    def findings_probs(self, images: list[np.ndarray], batch_size: int = 256) -> list[dict[str, float]]:
        keys = [_key(x) for x in images]
        miss = [i for i, k in enumerate(keys) if k not in self._probs]
        if miss:
            probs = self._model.findings_probs([images[i] for i in miss], batch_size)
            for j, i in enumerate(miss):
                self._probs[keys[i]] = probs[j]
        return [dict(self._probs[k]) for k in keys]

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        miss = [t for t in dict.fromkeys(texts) if t not in self._text]
        if miss:
            v = self._model.encode_texts(miss)
            for j, t in enumerate(miss):
                self._text[t] = v[j]
        if not texts:
            return self._model.encode_texts([])
        return np.stack([self._text[t] for t in texts])

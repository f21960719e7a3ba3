"""Modality router (MMedRAG++): zero-shot by prototype similarity.

Each modality's prototype is the normalized mean of its indexed image (or text)
vectors; a query goes to the modality whose prototype is most similar.  With one
modality indexed the router always answers it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from kgrag.model.encoders import l2n


class PrototypeRouter:
    def __init__(self, prototypes: Mapping[str, np.ndarray]) -> None:
        self.names = sorted(prototypes)
        self.matrix = l2n(np.stack([prototypes[n] for n in self.names])) if self.names else np.zeros((0, 1))

    @classmethod
    def fit(cls, vectors: np.ndarray, modalities: Sequence[str]) -> PrototypeRouter:
        protos = {}
        mods = np.asarray(modalities)
        for m in sorted(set(modalities)):
            protos[m] = l2n(vectors[mods == m].mean(axis=0, keepdims=True))[0]
        return cls(protos)

    def route(self, q: np.ndarray) -> tuple[str, dict[str, float]]:
        if not self.names:
            return "radiology", {}
        sims = self.matrix @ np.asarray(q, np.float32)
        scores = {n: float(s) for n, s in zip(self.names, sims, strict=True)}
        return self.names[int(np.argmax(sims))], scores

"""The trained retrieval model: image CNN + projection heads into a shared 256-d
space, image-findings head (V_I), fusion weights, reward model."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from kgrag import __version__
from kgrag.errors import IndexMismatchError, ModelNotFoundError
from kgrag.retrieval.fusion import FusionWeights

WEIGHTS = "weights.pt"
MANIFEST = "manifest.json"
IMAGE_SIZE = 128


class RetrievalModel:
    def __init__(self, image_encoder, text_projection, text_encoder, findings: list[str], fusion: FusionWeights,
                 reward=None, manifest: dict[str, Any] | None = None, device: str = "cpu") -> None:
        self.image_encoder = image_encoder
        self.text_projection = text_projection
        self.text_encoder = text_encoder  # SentenceTextEncoder (frozen)
        self.findings = findings
        self.fusion = fusion
        self.reward_model = reward
        self.manifest = manifest or {}
        self.device = device

    @property
    def name(self) -> str:
        return self.manifest.get("name", "default")

    @property
    def fingerprint(self) -> str:
        return self.manifest.get("fingerprint", "")

    @property
    def dim(self) -> int:
        return int(self.manifest.get("embed_dim", 256))

    def warm_up(self) -> None:
        self.text_encoder.warm_up()

    # -- encoding ---------------------------------------------------------------------
    def _batch(self, images: list[np.ndarray]):
        import torch

        from kgrag.ingest.images import _resize

        arr = np.stack([_resize(np.asarray(im, np.float32), IMAGE_SIZE) for im in images])[:, None]
        return torch.tensor(arr, dtype=torch.float32, device=self.device)

    def encode_images(self, images: list[np.ndarray], batch_size: int = 256) -> np.ndarray:
        import torch

        if not images:
            return np.zeros((0, self.dim), np.float32)
        self.image_encoder.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                z, _ = self.image_encoder(self._batch(images[i : i + batch_size]))
                out.append(z.cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def project_text_embeddings(self, emb: np.ndarray) -> np.ndarray:
        import torch

        self.text_projection.eval()
        with torch.no_grad():
            return self.text_projection(torch.tensor(emb, dtype=torch.float32, device=self.device)).cpu().numpy()

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self.project_text_embeddings(self.text_encoder.encode_texts(texts)).astype(np.float32)

    def findings_probs(self, images: list[np.ndarray]) -> list[dict[str, float]]:
        import torch

        if not images or self.image_encoder.findings is None:
            return [{} for _ in images]
        self.image_encoder.eval()
        with torch.no_grad():
            _, logits = self.image_encoder(self._batch(images))
            p = torch.sigmoid(logits).cpu().numpy()
        return [{c: float(v) for c, v in zip(self.findings, row, strict=True)} for row in p]

    def reward(self, query_vecs: np.ndarray, doc_vecs: np.ndarray) -> np.ndarray:
        import torch

        if self.reward_model is None:
            raise ModelNotFoundError("this model has no reward model", fix="retrain with 'kgrag train'")
        self.reward_model.eval()
        with torch.no_grad():
            q = torch.tensor(np.asarray(query_vecs, np.float32))
            d = torch.tensor(np.asarray(doc_vecs, np.float32))
            if q.shape[0] == 1 and d.shape[0] > 1:
                q = q.expand(d.shape[0], -1)
            return self.reward_model(q, d).numpy()

    # -- persistence --------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        import hashlib

        import torch

        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        state = {"image": self.image_encoder.state_dict(), "text": self.text_projection.state_dict(),
                 "reward": self.reward_model.state_dict() if self.reward_model is not None else None}
        tmp = p / (WEIGHTS + ".tmp")
        torch.save(state, tmp)
        tmp.replace(p / WEIGHTS)
        m = dict(self.manifest)
        m.update({"findings": self.findings, "fusion": self.fusion.to_dict(), "kgrag_version": __version__,
                  "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        m["fingerprint"] = hashlib.sha256((p / WEIGHTS).read_bytes()).hexdigest()[:16]
        (p / MANIFEST).write_text(json.dumps(m, indent=1, sort_keys=True))
        self.manifest = m

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> RetrievalModel:
        import torch

        from kgrag.retrieval.cnn import ImageEncoder, TextProjection
        from kgrag.retrieval.encoders import SentenceTextEncoder
        from kgrag.retrieval.reward import RewardModel

        p = Path(path)
        if not (p / MANIFEST).is_file() or not (p / WEIGHTS).is_file():
            raise ModelNotFoundError(f"no trained retrieval model in {p}", fix="run 'kgrag train' first")
        m = json.loads((p / MANIFEST).read_text())
        if m.get("format") != "kgrag.retrieval_model.v1":
            raise IndexMismatchError(f"{p} holds model format {m.get('format')!r}, expected kgrag.retrieval_model.v1",
                                     fix="retrain with 'kgrag train'")
        state = torch.load(p / WEIGHTS, map_location=device, weights_only=True)
        img = ImageEncoder(m["embed_dim"], len(m["findings"]), m["pooling"], m.get("width", 32))
        img.load_state_dict(state["image"])
        txt = TextProjection(m["text_dim"], m["embed_dim"])
        txt.load_state_dict(state["text"])
        rew = None
        if state.get("reward") is not None:
            rew = RewardModel(m["embed_dim"])
            rew.load_state_dict(state["reward"])
        enc = SentenceTextEncoder(m["text_encoder"], device=device)
        return cls(img.to(device), txt.to(device), enc, list(m["findings"]), FusionWeights(**m["fusion"]), rew, m, device)

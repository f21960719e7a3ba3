"""FAISS indexes over report texts, images and the fused space.

Each space lives in ``<index_dir>/<space>/`` with ``index.faiss``, ``vectors.npy``
(the stored L2-normalized vectors), ``ids.json`` (the id sidecar: row → study id;
FAISS row numbers are never used as study ids) and ``manifest.json`` (encoder
name and fingerprint, dim, metric, count, kind and parameters, build time,
kgrag version, graph version).  Inner product on normalized vectors = cosine.
Below ``flat_max`` rows the index is exact (IndexFlatIP); above it HNSW
(M = 32, efConstruction = 80, efSearch = 128).  The fused space holds the
normalized mean of a study's text and image vectors (studies without an image:
their text vector).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from kgrag import __version__
from kgrag.errors import IndexMismatchError, InputError
from kgrag.retrieval.encoders import l2n

SPACES = ("text", "image", "fused")
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 128


def _faiss():
    from kgrag.deps import require

    return require("faiss")


class SpaceIndex:
    def __init__(self, ids: list[str], vectors: np.ndarray, manifest: dict[str, Any], index: Any = None) -> None:
        self.ids = ids
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.manifest = manifest
        self.row = {sid: i for i, sid in enumerate(ids)}
        self.index = index if index is not None else self._make(self.vectors, manifest)

    @staticmethod
    def _make(vectors: np.ndarray, manifest: dict[str, Any]):
        faiss = _faiss()
        d = vectors.shape[1]
        if manifest["kind"] == "hnsw":
            idx = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            idx.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            idx.hnsw.efSearch = HNSW_EF_SEARCH
        else:
            idx = faiss.IndexFlatIP(d)
        if len(vectors):
            idx.add(vectors)
        return idx

    def search(self, q: np.ndarray, k: int) -> tuple[list[list[str]], np.ndarray]:
        k = min(k, len(self.ids))
        if k == 0:
            return [[] for _ in range(len(q))], np.zeros((len(q), 0), np.float32)
        scores, rows = self.index.search(np.ascontiguousarray(q, dtype=np.float32), k)
        return [[self.ids[r] for r in row if r >= 0] for row in rows], scores

    def save(self, d: Path) -> None:
        faiss = _faiss()
        d.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(d / "index.faiss"))
        np.save(d / "vectors.npy", self.vectors)
        (d / "ids.json").write_text(json.dumps(self.ids))
        self.manifest["count"] = len(self.ids)
        (d / "manifest.json").write_text(json.dumps(self.manifest, indent=1, sort_keys=True))

    @classmethod
    def load(cls, d: Path) -> SpaceIndex:
        faiss = _faiss()
        m = json.loads((d / "manifest.json").read_text())
        ids = json.loads((d / "ids.json").read_text())
        vec = np.load(d / "vectors.npy")
        idx = faiss.read_index(str(d / "index.faiss"))
        if m["kind"] == "hnsw":
            idx.hnsw.efSearch = HNSW_EF_SEARCH
        if idx.ntotal != len(ids) or len(vec) != len(ids):
            raise IndexMismatchError(f"index {d} is inconsistent: {idx.ntotal} vectors, {len(ids)} ids",
                                     fix="rebuild with 'kgrag index build'")
        return cls(ids, vec, m, idx)


class IndexSet:
    """The text, image and fused indexes of one corpus, plus study modalities."""

    def __init__(self, path: Path, spaces: dict[str, SpaceIndex], meta: dict[str, Any]) -> None:
        self.path = Path(path)
        self.spaces = spaces
        self.meta = meta
        self.modalities: dict[str, str] = meta.get("modalities", {})
        self.splits: dict[str, str] = meta.get("splits", {})

    @property
    def encoder(self) -> str:
        return self.meta.get("encoder", "")

    @property
    def graph_version(self) -> str | None:
        return self.meta.get("graph_version")

    @property
    def version(self) -> str:
        return self.meta.get("version", "")

    def ids(self, space: str) -> list[str]:
        return list(self.spaces[space].ids)

    def search(self, space: str, vectors: np.ndarray, k: int) -> tuple[list[list[str]], np.ndarray]:
        if space not in self.spaces:
            raise InputError(f"no {space!r} index", fix=f"use one of {sorted(self.spaces)}")
        return self.spaces[space].search(vectors, k)

    def vectors(self, space: str, ids: Iterable[str]) -> np.ndarray:
        sp = self.spaces[space]
        rows = [sp.row.get(i) for i in ids]
        out = np.zeros((len(rows), sp.vectors.shape[1]), np.float32)
        for j, r in enumerate(rows):
            if r is not None:
                out[j] = sp.vectors[r]
        return out

    def has(self, space: str, sid: str) -> bool:
        return sid in self.spaces[space].row

    def info(self) -> dict[str, Any]:
        return {"path": str(self.path), "version": self.version, "encoder": self.encoder,
                "graph_version": self.graph_version, "kgrag_version": self.meta.get("kgrag_version"),
                "built_at": self.meta.get("built_at"),
                "spaces": {k: {kk: v.manifest.get(kk) for kk in ("kind", "count", "dim", "metric")} for k, v in self.spaces.items()}}

    # -- build / load -----------------------------------------------------------------
    @classmethod
    def build(cls, out_dir: str | Path, model: Any, studies: Iterable[Any], *, graph_version: str | None,
              exclude_splits: tuple[str, ...] = ("test",), flat_max: int = 20_000, progress: bool = True,
              batch: int = 256) -> IndexSet:
        from tqdm import tqdm

        from kgrag.ingest.images import load_image

        rows = [s for s in studies if s.split not in exclude_splits]
        if not rows:
            raise InputError("no studies to index", fix="ingest a corpus first (kgrag ingest)")
        text_v, img_v, img_ids = [], [], []
        for i in tqdm(range(0, len(rows), batch), desc="index", unit="batch", disable=not progress):
            chunk = rows[i : i + batch]
            text_v.append(model.encode_texts([s.report for s in chunk]))
            with_img = [s for s in chunk if s.images]
            if with_img:
                img_v.append(model.encode_images([load_image(s.images[0], size=128) for s in with_img]))
                img_ids += [s.id for s in with_img]
        T = np.concatenate(text_v)
        ids = [s.id for s in rows]
        img_mat = np.concatenate(img_v) if img_v else np.zeros((0, T.shape[1]), np.float32)
        row_img = {sid: j for j, sid in enumerate(img_ids)}
        F = l2n(np.stack([T[i] + (img_mat[row_img[sid]] if sid in row_img else T[i]) for i, sid in enumerate(ids)]))
        return cls._assemble(Path(out_dir), model, {"text": (ids, T), "image": (img_ids, img_mat), "fused": (ids, F)},
                             {s.id: s.modality for s in rows}, {s.id: s.split for s in rows}, graph_version, flat_max)

    @classmethod
    def _assemble(cls, out: Path, model: Any, data: dict[str, tuple[list[str], np.ndarray]], modalities: dict[str, str],
                  splits: dict[str, str], graph_version: str | None, flat_max: int) -> IndexSet:
        import hashlib

        built = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        enc = getattr(model, "name", "encoder")
        fp = getattr(model, "fingerprint", "") or enc
        spaces = {}
        for sp, (ids, vec) in data.items():
            kind = "flat" if len(ids) <= flat_max else "hnsw"
            m = {"space": sp, "encoder": enc, "encoder_fingerprint": fp, "dim": int(vec.shape[1]) if vec.ndim == 2 else 0,
                 "metric": "inner_product(cosine)", "kind": kind, "count": len(ids), "built_at": built,
                 "kgrag_version": __version__, "graph_version": graph_version,
                 "params": {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION, "efSearch": HNSW_EF_SEARCH} if kind == "hnsw" else {}}
            spaces[sp] = SpaceIndex(ids, vec if len(ids) else np.zeros((0, data["text"][1].shape[1]), np.float32), m)
        version = "i-" + hashlib.sha256(json.dumps([fp, graph_version, sorted(data["text"][0])]).encode()).hexdigest()[:16]
        meta = {"format": "kgrag.indexset.v1", "encoder": enc, "encoder_fingerprint": fp, "graph_version": graph_version,
                "kgrag_version": __version__, "built_at": built, "version": version, "flat_max": flat_max,
                "modalities": modalities, "splits": splits}
        s = cls(out, spaces, meta)
        s.save()
        return s

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        for sp, idx in self.spaces.items():
            idx.save(tmp / sp)
        (tmp / "manifest.json").write_text(json.dumps(self.meta, indent=1, sort_keys=True))
        if self.path.exists():
            import shutil

            old = self.path.with_name(self.path.name + ".old")
            if old.exists():
                shutil.rmtree(old)
            self.path.rename(old)
            tmp.rename(self.path)
            shutil.rmtree(old)
        else:
            tmp.rename(self.path)

    @classmethod
    def load(cls, path: str | Path, *, expect_encoder: str | None = None, expect_graph_version: str | None = None) -> IndexSet:
        p = Path(path)
        if not (p / "manifest.json").is_file():
            raise InputError(f"no indexes at {p}", fix="run 'kgrag index build'")
        meta = json.loads((p / "manifest.json").read_text())
        if meta.get("format") != "kgrag.indexset.v1":
            raise IndexMismatchError(f"{p} has format {meta.get('format')!r}", fix="rebuild with 'kgrag index build'")
        if expect_encoder is not None and meta.get("encoder_fingerprint") != expect_encoder:
            raise IndexMismatchError(
                f"indexes at {p} were built with encoder {meta.get('encoder_fingerprint')!r}, the model is {expect_encoder!r}",
                fix="rebuild with 'kgrag index build'")
        if expect_graph_version is not None and meta.get("graph_version") != expect_graph_version:
            raise IndexMismatchError(
                f"indexes at {p} were built against graph {meta.get('graph_version')!r}, the graph is now {expect_graph_version!r}",
                fix="rebuild with 'kgrag index build' after 'kgrag kg build'")
        spaces = {sp: SpaceIndex.load(p / sp) for sp in SPACES if (p / sp / "manifest.json").is_file()}
        return cls(p, spaces, meta)

    def add(self, model: Any, studies: Iterable[Any], progress: bool = False) -> int:
        """Add studies not yet indexed (test split excluded); rebuilds each space's FAISS index."""
        new = [s for s in studies if s.split != "test" and s.id not in self.spaces["text"].row]
        if not new:
            return 0
        part = IndexSet.build(self.path.with_name(self.path.name + ".part"), model, new,
                              graph_version=self.graph_version, flat_max=self.meta.get("flat_max", 20_000), progress=progress)
        data = {}
        for sp in SPACES:
            a, b = self.spaces[sp], part.spaces[sp]
            data[sp] = (a.ids + b.ids, np.concatenate([a.vectors, b.vectors]) if len(b.ids) else a.vectors)
        import shutil

        shutil.rmtree(part.path)
        merged = IndexSet._assemble(self.path, model, data, {**self.modalities, **part.modalities},
                                    {**self.splits, **part.splits}, self.graph_version, self.meta.get("flat_max", 20_000))
        self.spaces, self.meta = merged.spaces, merged.meta
        self.modalities, self.splits = merged.modalities, merged.splits
        return len(new)


def _graph_version(settings: Any) -> str | None:
    from kgrag.errors import KgragError
    from kgrag.kg.factory import open_store

    try:
        store = open_store(settings)
    except KgragError as e:
        import logging

        logging.getLogger(__name__).warning("graph store unavailable (%s); graph_version recorded as null", e.message)
        return None
    try:
        return store.version()
    finally:
        store.close()


def build_from_settings(settings: Any, model_name: str = "default") -> dict[str, Any]:
    from kgrag.ingest.docstore import DocStore
    from kgrag.retrieval.model import RetrievalModel

    model = RetrievalModel.load(settings.models_dir / model_name)
    model.warm_up()
    with DocStore.from_settings(settings) as ds:
        studies = list(ds.studies())
    idx = IndexSet.build(settings.index_dir, model, studies, graph_version=_graph_version(settings),
                         flat_max=settings.retrieval.flat_index_max)
    info = idx.info()
    info["counts"] = {k: v["count"] for k, v in info["spaces"].items()}
    return info


def add_from_settings(settings: Any, model_name: str = "default") -> dict[str, Any]:
    from kgrag.ingest.docstore import DocStore
    from kgrag.retrieval.model import RetrievalModel

    model = RetrievalModel.load(settings.models_dir / model_name)
    idx = IndexSet.load(settings.index_dir, expect_encoder=model.fingerprint)
    with DocStore.from_settings(settings) as ds:
        n = idx.add(model, ds.studies())
    info = idx.info()
    return {"added": n, "counts": {k: v["count"] for k, v in info["spaces"].items()}}

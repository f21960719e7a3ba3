"""FAISS indexes over report texts, images and the fused space.

Layout of an index directory (``settings.index_dir``)::

    manifest.json          format, version, encoder name + fingerprint, graph version,
                           kgrag version, build time, flat_max, study modalities and splits
    <space>/index.faiss    the FAISS index (space = text | image | fused)
    <space>/vectors.npy    the stored L2-normalized float32 vectors, row-aligned
    <space>/ids.json       the id sidecar: row → study id (FAISS row numbers are
                           never exposed as study ids)
    <space>/manifest.json  encoder, fingerprint, dim, metric, count, kind, params,
                           build time, kgrag version, graph version

Metric: inner product of L2-normalized vectors (= cosine).  A space with at most
``flat_max`` rows is exact (``IndexFlatIP``); above it HNSW (``IndexHNSWFlat``,
M = 32, efConstruction = 80, efSearch = 128; recorded in ``params``).

Spaces: ``text`` holds every indexed study's report embedding; ``image`` the
mean of its images' embeddings, re-normalized (studies without images are
absent); ``fused`` the normalized mean of the text and image vectors,
l2n((t + i) / 2) (a study without images: its text vector).  The mean keeps the
fused space in the same dimension as the others and weighs both modalities equally.
A model trained on a text-only corpus (``model.modalities == ["text"]``) indexes
the text space only: ``image`` is empty and ``fused`` equals ``text``; images a
study might have are not read (the manifest's ``model_modalities`` says so).

Studies of the ``test`` split are never indexed (leakage guard).  Directories are
written to a sibling ``.tmp`` and swapped in, so a crash never leaves a half index.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from kgrag import __version__
from kgrag.config import FLAT_INDEX_MAX
from kgrag.errors import IndexMismatchError, InputError, KgragError, StorageError
from kgrag.imaging import IMAGE_SIZE
from kgrag.model.encoders import fingerprint_of, l2n

log = logging.getLogger(__name__)

FORMAT = "kgrag.indexset.v1"
SPACES = ("text", "image", "fused")
METRIC = "inner_product(cosine)"
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 128


def _modalities(model: Any) -> list[str]:
    """What ``model`` encodes (a RetrievalModel says; any other Encoder is taken to do both)."""
    return list(getattr(model, "modalities", None) or ["image", "text"])


def _faiss():
    from kgrag.deps import require

    return require("faiss")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _kind(count: int, flat_max: int) -> str:
    return "flat" if count <= flat_max else "hnsw"


def _params(kind: str) -> dict[str, int]:
    return {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION, "efSearch": HNSW_EF_SEARCH} if kind == "hnsw" else {}


class SpaceIndex:
    """One space: FAISS index + row-aligned vectors + id sidecar + manifest."""

    def __init__(self, ids: list[str], vectors: np.ndarray, manifest: dict[str, Any], index: Any = None) -> None:
        self.ids = list(ids)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(self.ids), int(manifest["dim"]))
        self.manifest = manifest
        self.row = {sid: i for i, sid in enumerate(self.ids)}
        if len(self.row) != len(self.ids):
            raise InputError(f"duplicate study ids in the {manifest.get('space')} space", fix="study ids must be unique")
        self.index = index if index is not None else self._make(self.vectors, manifest)

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @staticmethod
    def _make(vectors: np.ndarray, manifest: dict[str, Any]):
        faiss = _faiss()
        d = int(manifest["dim"])
        if manifest["kind"] == "hnsw":
            p = manifest.get("params") or _params("hnsw")
            idx = faiss.IndexHNSWFlat(d, int(p["M"]), faiss.METRIC_INNER_PRODUCT)
            idx.hnsw.efConstruction = int(p["efConstruction"])
            idx.hnsw.efSearch = int(p["efSearch"])
        else:
            idx = faiss.IndexFlatIP(d)
        if len(vectors):
            idx.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return idx

    def append(self, ids: list[str], vectors: np.ndarray) -> None:
        """Add new rows to the FAISS index in place (ids must be new)."""
        if not ids:
            return
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        self.index.add(v)
        base = len(self.ids)
        self.ids += list(ids)
        self.row.update({sid: base + j for j, sid in enumerate(ids)})
        self.vectors = np.concatenate([self.vectors, v])
        self.manifest["count"] = len(self.ids)

    def search(self, q: np.ndarray, k: int) -> tuple[list[list[str]], np.ndarray]:
        q = np.ascontiguousarray(np.atleast_2d(q), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise InputError(f"query vectors have dim {q.shape[1]}, the {self.manifest.get('space')} index has {self.dim}",
                             fix="encode queries with the model the index was built with")
        k = min(int(k), len(self.ids))
        if k <= 0:
            return [[] for _ in range(len(q))], np.zeros((len(q), 0), np.float32)
        scores, rows = self.index.search(q, k)
        ids = [[self.ids[r] for r in row if r >= 0] for row in rows]
        return ids, scores

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
        try:
            m = json.loads((d / "manifest.json").read_text())
            ids = json.loads((d / "ids.json").read_text())
            vec = np.load(d / "vectors.npy")
            idx = faiss.read_index(str(d / "index.faiss"))
        except (OSError, ValueError, RuntimeError) as e:
            raise IndexMismatchError(f"index files in {d} are missing or unreadable: {e}",
                                     fix="rebuild with 'kgrag index build'") from e
        if m.get("kind") == "hnsw":
            idx.hnsw.efSearch = int((m.get("params") or {}).get("efSearch", HNSW_EF_SEARCH))
        if idx.ntotal != len(ids) or len(vec) != len(ids):
            raise IndexMismatchError(f"index {d} is inconsistent: {idx.ntotal} FAISS rows, {len(vec)} vectors, {len(ids)} ids",
                                     fix="rebuild with 'kgrag index build'")
        return cls(ids, vec, m, idx)


class IndexSet:
    """The text, image and fused indexes of one corpus, plus study modalities and splits."""

    def __init__(self, path: str | Path, spaces: dict[str, SpaceIndex], meta: dict[str, Any], model: Any = None) -> None:
        self.path = Path(path)
        self.spaces = spaces
        self.meta = meta
        self.model = model  # the encoder used by add(); set by build(), or load(model=...)
        self.modalities: dict[str, str] = dict(meta.get("modalities", {}))
        self.splits: dict[str, str] = dict(meta.get("splits", {}))

    @property
    def encoder(self) -> str:
        return str(self.meta.get("encoder", ""))

    @property
    def encoder_fingerprint(self) -> str:
        return str(self.meta.get("encoder_fingerprint", ""))

    @property
    def graph_version(self) -> str | None:
        return self.meta.get("graph_version")

    @property
    def version(self) -> str:
        return str(self.meta.get("version", ""))

    def ids(self, space: str) -> list[str]:
        return list(self._space(space).ids)

    def _space(self, space: str) -> SpaceIndex:
        if space not in self.spaces:
            raise InputError(f"no {space!r} index", fix=f"use one of {sorted(self.spaces)}")
        return self.spaces[space]

    def search(self, space: str, query_vecs: np.ndarray, k: int) -> tuple[list[list[str]], np.ndarray]:
        """Top-k study ids and inner-product scores per query row."""
        return self._space(space).search(query_vecs, k)

    def vectors(self, space: str, ids: Iterable[str]) -> np.ndarray:
        """Stored normalized vectors of ``ids`` (row-aligned); an id absent from the
        space (e.g. a study without images in ``image``) gets a zero row — check
        :meth:`has` when that matters."""
        sp = self._space(space)
        rows = [sp.row.get(i, -1) for i in ids]
        out = np.zeros((len(rows), sp.dim), np.float32)
        r = np.asarray(rows, np.int64)
        ok = r >= 0
        if ok.any():
            out[ok] = sp.vectors[r[ok]]
        return out

    def has(self, space: str, sid: str) -> bool:
        return sid in self._space(space).row

    def info(self) -> dict[str, Any]:
        mods: dict[str, int] = {}
        for m in self.modalities.values():
            mods[m] = mods.get(m, 0) + 1
        return {"path": str(self.path), "version": self.version, "encoder": self.encoder,
                "encoder_fingerprint": self.encoder_fingerprint, "graph_version": self.graph_version,
                "kgrag_version": self.meta.get("kgrag_version"), "built_at": self.meta.get("built_at"),
                "updated_at": self.meta.get("updated_at"), "flat_max": self.meta.get("flat_max"), "modalities": mods,
                "model_modalities": self.meta.get("model_modalities", ["image", "text"]),
                "spaces": {k: {kk: v.manifest.get(kk) for kk in ("kind", "count", "dim", "metric", "params")}
                           for k, v in self.spaces.items()}}

    # -- encoding ---------------------------------------------------------------------
    @staticmethod
    def _encode(model: Any, studies: list[Any], batch: int, progress: bool) -> dict[str, tuple[list[str], np.ndarray]]:
        from tqdm import tqdm

        from kgrag.imaging import load_image

        images_ok = "image" in _modalities(model)
        text_v, img_v, img_ids = [], [], []
        for i in tqdm(range(0, len(studies), batch), desc="index", unit="batch", disable=not progress):
            chunk = studies[i : i + batch]
            text_v.append(np.asarray(model.encode_texts([s.report for s in chunk]), np.float32))
            owners, pix = [], []
            for s in chunk:
                for p in (s.images or []) if images_ok else []:
                    try:
                        pix.append(load_image(p, size=IMAGE_SIZE))
                    except KgragError as e:
                        raise InputError(f"study {s.id}: {e.message}", fix=e.fix or "fix or drop the image") from e
                    owners.append(s.id)
            if pix:
                v = np.asarray(model.encode_images(pix), np.float32)
                for sid in dict.fromkeys(owners):  # mean over a study's images
                    img_v.append(v[[j for j, o in enumerate(owners) if o == sid]].mean(axis=0))
                    img_ids.append(sid)
        T = l2n(np.concatenate(text_v))
        ids = [s.id for s in studies]
        img = l2n(np.stack(img_v)) if img_v else np.zeros((0, T.shape[1]), np.float32)
        row_img = {sid: j for j, sid in enumerate(img_ids)}
        F = l2n(np.stack([(T[i] + img[row_img[sid]]) / 2 if sid in row_img else T[i] for i, sid in enumerate(ids)]))
        return {"text": (ids, T), "image": (img_ids, img), "fused": (ids, F)}

    # -- build / load -----------------------------------------------------------------
    @classmethod
    def build(cls, out_dir: str | Path, model: Any, studies: Iterable[Any], *, graph_version: str | None,
              exclude_splits: tuple[str, ...] = ("test",), flat_max: int = FLAT_INDEX_MAX, progress: bool = True,
              batch: int = 256) -> IndexSet:
        """Encode ``studies`` (objects with id, report, images, split, modality) with
        ``model`` (a RetrievalModel or any Encoder) and write the three spaces."""
        from kgrag.paths import check_writable

        check_writable(out_dir, "write the indexes")  # before minutes of encoding
        check_writable(Path(out_dir).parent, "write the indexes")
        rows = [s for s in studies if s.split not in exclude_splits]
        if not rows:
            raise InputError("no studies to index (after leaving out splits " + ", ".join(exclude_splits) + ")",
                             fix="ingest a corpus with train/val studies first (kgrag ingest)")
        data = cls._encode(model, rows, batch, progress)
        return cls.from_vectors(out_dir, model, data, {s.id: s.modality for s in rows}, {s.id: s.split for s in rows},
                                graph_version=graph_version, flat_max=flat_max)

    @classmethod
    def from_vectors(cls, out_dir: str | Path, model: Any, data: dict[str, tuple[list[str], np.ndarray]],
                     modalities: dict[str, str], splits: dict[str, str], graph_version: str | None = None,
                     flat_max: int = FLAT_INDEX_MAX) -> IndexSet:
        """Write an index set from precomputed (ids, vectors) per space (vectors are
        re-normalized); used by :meth:`build` and by benchmarks on synthetic vectors."""
        leaked = sorted(i for i, sp in splits.items() if sp == "test")
        if leaked:
            raise InputError(f"{len(leaked)} test-split studies would be indexed (first {leaked[0]})",
                             fix="test studies are never indexed; leave them out")
        built = _now()
        enc, fp = getattr(model, "name", type(model).__name__), fingerprint_of(model)
        dim = int(data["text"][1].shape[1])
        spaces = {}
        for sp in SPACES:
            ids, vec = data.get(sp, ([], np.zeros((0, dim), np.float32)))
            vec = l2n(np.asarray(vec, np.float32).reshape(len(ids), dim))
            kind = _kind(len(ids), flat_max)
            m = {"space": sp, "encoder": enc, "encoder_fingerprint": fp, "dim": dim, "metric": METRIC, "kind": kind,
                 "count": len(ids), "built_at": built, "kgrag_version": __version__, "graph_version": graph_version,
                 "params": _params(kind)}
            spaces[sp] = SpaceIndex(ids, vec, m)
        meta = {"format": FORMAT, "encoder": enc, "encoder_fingerprint": fp, "graph_version": graph_version,
                "kgrag_version": __version__, "built_at": built, "updated_at": built, "flat_max": flat_max,
                "model_modalities": _modalities(model), "modalities": dict(modalities), "splits": dict(splits)}
        s = cls(out_dir, spaces, meta, model)
        s.save()
        return s

    _assemble = from_vectors  # name used by earlier benchmark scripts

    def _stamp(self) -> None:
        self.meta["modalities"], self.meta["splits"] = self.modalities, self.splits
        self.meta["version"] = "i-" + hashlib.sha256(json.dumps(
            [self.encoder_fingerprint, self.graph_version, sorted(self.spaces["text"].ids)]).encode()).hexdigest()[:16]

    def save(self) -> None:
        """Write atomically: a sibling ``.tmp`` directory, then swapped in (the previous
        index waits in ``.old`` until the new one is in place; a save killed between the
        two renames is finished by the next save or load, see :func:`recover`)."""
        from kgrag.paths import private_dir, writing

        self._stamp()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with writing(self.path.parent, "write the indexes"):
            recover(self.path)
            if tmp.exists():
                shutil.rmtree(tmp)
            private_dir(self.path.parent)
            tmp.mkdir(mode=0o700)
            for sp, idx in self.spaces.items():
                idx.save(tmp / sp)
            (tmp / "manifest.json").write_text(json.dumps(self.meta, indent=1, sort_keys=True))
            if self.path.exists():
                old = self.path.with_name(self.path.name + ".old")
                if old.exists():
                    shutil.rmtree(old)
                try:
                    self.path.rename(old)
                except OSError as e:
                    if e.errno not in (errno.EBUSY, errno.EXDEV):
                        raise
                    shutil.rmtree(tmp)
                    raise StorageError(f"cannot swap the new index in: {self.path} is a mount point",
                                       fix="mount a folder above it (e.g. the whole kgrag home) instead") from e
                tmp.rename(self.path)
                shutil.rmtree(old)
            else:
                tmp.rename(self.path)

    @classmethod
    def load(cls, path: str | Path, *, expect_encoder: str | None = None, expect_graph_version: str | None = None,
             model: Any = None) -> IndexSet:
        """Open an index set.  ``expect_encoder`` (a fingerprint, see
        :func:`~kgrag.model.encoders.fingerprint_of`) and ``expect_graph_version``
        must equal what the index was built with, else ``IndexMismatchError``.
        ``model`` is kept for :meth:`add` (its fingerprint is checked too)."""
        p = Path(path)
        recover(p)
        if not (p / "manifest.json").is_file():
            raise InputError(f"no indexes at {p}", fix="run 'kgrag index build'")
        meta = json.loads((p / "manifest.json").read_text())
        if meta.get("format") != FORMAT:
            raise IndexMismatchError(f"{p} has index format {meta.get('format')!r}, this kgrag reads {FORMAT}",
                                     fix="rebuild with 'kgrag index build'")
        if model is not None and expect_encoder is None:
            expect_encoder = fingerprint_of(model)
        if expect_encoder is not None and meta.get("encoder_fingerprint") != expect_encoder:
            raise IndexMismatchError(
                f"indexes at {p} were built with encoder {meta.get('encoder')!r} (fingerprint "
                f"{meta.get('encoder_fingerprint')!r}); the model in use has fingerprint {expect_encoder!r}",
                fix="rebuild with 'kgrag index build' (the model was retrained or another one was chosen)")
        if expect_graph_version is not None and meta.get("graph_version") != expect_graph_version:
            raise IndexMismatchError(
                f"indexes at {p} were built against graph version {meta.get('graph_version')!r}, "
                f"the graph is now {expect_graph_version!r}",
                fix="rebuild with 'kgrag index build' after 'kgrag kg build'")
        missing = [sp for sp in SPACES if not (p / sp / "manifest.json").is_file()]
        if missing:
            raise IndexMismatchError(f"indexes at {p} lack the space(s) {missing}", fix="rebuild with 'kgrag index build'")
        spaces = {sp: SpaceIndex.load(p / sp) for sp in SPACES}
        return cls(p, spaces, meta, model)

    def add(self, studies: Iterable[Any], model: Any = None, *, progress: bool = False, batch: int = 256) -> int:
        """Index studies not yet present (test split and known ids are skipped) with
        ``model`` or the one given to :meth:`build`/:meth:`load`; appends to each
        FAISS index in place (a flat space that grows past ``flat_max`` is rebuilt as
        HNSW), updates the manifests and saves.  Returns the number added."""
        model = model if model is not None else self.model
        if model is None:
            raise InputError("IndexSet.add needs the encoder the index was built with",
                             fix="pass model=, or open the index with IndexSet.load(dir, model=...)")
        fp = fingerprint_of(model)
        if fp != self.encoder_fingerprint:
            raise IndexMismatchError(f"index at {self.path} was built with encoder fingerprint "
                                     f"{self.encoder_fingerprint!r}, add() got {fp!r}",
                                     fix="rebuild with 'kgrag index build' instead of adding")
        seen: set[str] = set()
        new = []
        for s in studies:
            if s.split == "test" or s.id in self.spaces["text"].row or s.id in seen:
                continue
            seen.add(s.id)
            new.append(s)
        if not new:
            return 0
        from kgrag.paths import check_writable

        check_writable(self.path, "write the indexes")
        check_writable(self.path.parent, "write the indexes")
        data = self._encode(model, new, batch, progress)
        flat_max = int(self.meta.get("flat_max", FLAT_INDEX_MAX))
        for sp in SPACES:
            ids, vec = data[sp]
            space = self.spaces[sp]
            kind = _kind(len(space.ids) + len(ids), flat_max)
            if kind != space.manifest["kind"]:
                space.manifest.update({"kind": kind, "params": _params(kind)})
                self.spaces[sp] = SpaceIndex(space.ids + ids, np.concatenate([space.vectors, vec]), space.manifest)
            else:
                space.append(ids, vec)
        self.modalities.update({s.id: s.modality for s in new})
        self.splits.update({s.id: s.split for s in new})
        self.meta["updated_at"] = _now()
        self.save()
        return len(new)


def recover(path: str | Path) -> bool:
    """Finish a save that was killed between moving the old index aside and moving the
    new one in: with no index at ``path``, a complete ``.old`` goes back.  True if it did."""
    p = Path(path)
    old = p.with_name(p.name + ".old")
    if p.exists() or not (old / "manifest.json").is_file():
        return False
    try:
        old.rename(p)
    except OSError as e:  # a read-only index folder: load from .old is still refused below
        log.warning("could not move %s back to %s: %s", old, p, e)
        return False
    log.warning("restored the previous index from %s (a save was interrupted)", old)
    return True


# -- settings-level entry points (used by kgrag index ...) --------------------------------
def _graph_version(settings: Any) -> str | None:
    from kgrag.graph.factory import open_store

    try:
        store = open_store(settings)
    except KgragError as e:
        log.warning("graph store unavailable (%s); the index records graph_version null — "
                    "rebuild it once the graph is reachable", e.message)
        return None
    try:
        return store.version()
    finally:
        store.close()


def _trainable_studies(ds: Any) -> list[Any]:
    return [s for sp in ("train", "val") for s in ds.studies(split=sp)]


def build_from_settings(settings: Any, model_name: str = "default", *, progress: bool = True) -> dict[str, Any]:
    """``kgrag index build``: index the docstore's train+val studies with a trained model."""
    from kgrag.docstore import DocStore
    from kgrag.model.retrieval_model import RetrievalModel

    model = RetrievalModel.load(settings.models_dir / model_name, device=settings.models.device)
    model.warm_up()
    with DocStore.from_settings(settings) as ds:
        studies = _trainable_studies(ds)
    idx = IndexSet.build(settings.index_dir, model, studies, graph_version=_graph_version(settings),
                         flat_max=settings.retrieval.flat_index_max, progress=progress)
    info = idx.info()
    info["counts"] = {k: v["count"] for k, v in info["spaces"].items()}
    info["model"] = model_name
    return info


def add_from_settings(settings: Any, model_name: str = "default", *, progress: bool = True) -> dict[str, Any]:
    """``kgrag index add``: index train+val studies ingested since the last build."""
    from kgrag.docstore import DocStore
    from kgrag.model.retrieval_model import RetrievalModel

    model = RetrievalModel.load(settings.models_dir / model_name, device=settings.models.device)
    idx = IndexSet.load(settings.index_dir, model=model)
    model.warm_up()
    with DocStore.from_settings(settings) as ds:
        n = idx.add(_trainable_studies(ds), progress=progress)
    info = idx.info()
    return {"added": n, "counts": {k: v["count"] for k, v in info["spaces"].items()}, "version": idx.version,
            "path": str(idx.path)}

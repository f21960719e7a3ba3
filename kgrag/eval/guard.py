"""Leakage guard: refuse a home whose graph, model or index saw a test study.

Everything in a home is built from its docstore: ``kgrag kg build`` counts the
train split, ``kgrag train`` reads train and val, ``kgrag index build`` indexes train
and val.  A study that the evaluation manifest puts in ``test`` was therefore seen
when any of these holds:

- **docstore**: the home's docstore files it under train or val (the manifest's split
  and the home's disagree — e.g. the home was ingested from another split);
- **index**: the index manifest records it (the index lists the split of every
  indexed study at build time), or its text space holds it;
- **graph**: an edge's provenance names it, or the last graph build counted more
  train studies than the docstore's train split holds now (studies left train after
  the build — one may be this test study);
- **model**: the model manifest's training counts exceed the docstore's current
  train / val splits (the same reasoning), or the manifest's list of training ids,
  when it carries one, names a test study.

The counts checks are necessary conditions (a swap of one train and one test study
between builds keeps the counts); the docstore, index and provenance checks are exact.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kgrag.errors import InputError


def _first(ids: Iterable[str], n: int = 3) -> str:
    xs = sorted(ids)
    return ", ".join(xs[:n]) + (f" (+{len(xs) - n} more)" if len(xs) > n else "")


def find_leaks(test_ids: Iterable[str], *, docstore_splits: Mapping[str, str], index_meta: Mapping[str, Any] | None,
               index_ids: Iterable[str] = (), graph_edges: Iterable[Mapping[str, Any]] = (),
               graph_build: Mapping[str, Any] | None = None, model_manifest: Mapping[str, Any] | None = None
               ) -> list[dict[str, Any]]:
    """Every way the home saw one of ``test_ids``; [] when it saw none."""
    test = set(test_ids)
    out: list[dict[str, Any]] = []
    filed = {i: docstore_splits[i] for i in test if i in docstore_splits and docstore_splits[i] != "test"}
    if filed:
        out.append({"component": "docstore", "ids": sorted(filed),
                    "message": f"{len(filed)} test studies of the manifest are {'/'.join(sorted(set(filed.values())))} "
                               f"in the home's docstore ({_first(filed)}), so the graph, model and index were built on them",
                    "fix": "evaluate with the manifest the home was ingested from, or ingest this manifest into a new "
                           "home (kgrag --home DIR ingest ...) and rebuild graph, model and index there"})
    if index_meta is not None:
        idx = (set(index_meta.get("splits") or {}) | set(index_ids)) & test
        if idx:
            out.append({"component": "index", "ids": sorted(idx),
                        "message": f"the index holds {len(idx)} test studies ({_first(idx)})",
                        "fix": "rebuild the index with 'kgrag index build' (it never indexes test studies)"})
    prov = {s for e in graph_edges for s in (e.get("evidence_studies") or []) if s in test}
    if prov:
        out.append({"component": "graph", "ids": sorted(prov),
                    "message": f"graph edge provenance names {len(prov)} test studies ({_first(prov)})",
                    "fix": "rebuild the graph with 'kgrag kg build' (it counts the train split only)"})
    n_train = sum(1 for v in docstore_splits.values() if v == "train")
    n_val = sum(1 for v in docstore_splits.values() if v == "val")
    if graph_build and int(graph_build.get("n_train_studies") or 0) > n_train:
        out.append({"component": "graph", "ids": [],
                    "message": f"the graph was built from {graph_build['n_train_studies']} train studies; the docstore "
                               f"now has {n_train}: studies left the train split after the build",
                    "fix": "rebuild the graph with 'kgrag kg build', then 'kgrag index build'"})
    if model_manifest:
        seen = set(model_manifest.get("train_ids") or []) | set(model_manifest.get("val_ids") or [])
        hit = seen & test
        if hit:
            out.append({"component": "model", "ids": sorted(hit),
                        "message": f"the model was trained on {len(hit)} test studies ({_first(hit)})",
                        "fix": "retrain with 'kgrag train', then 'kgrag index build'"})
        mt, mv = int(model_manifest.get("n_train") or 0), int(model_manifest.get("n_val") or 0)
        if mt > n_train or mv > n_val:
            out.append({"component": "model", "ids": [],
                        "message": f"the model was trained on {mt} train / {mv} val studies; the docstore now has "
                                   f"{n_train} / {n_val}: studies left those splits after training",
                        "fix": "retrain with 'kgrag train', then 'kgrag index build'"})
    return out


def check_home(settings: Any, test_ids: Iterable[str], *, model_name: str = "default", store: Any = None,
               docstore: Any = None) -> dict[str, Any]:
    """Read the home's docstore splits, index manifest, graph and model manifest and
    raise :class:`InputError` when it saw a test study; else return what was checked."""
    from kgrag.docstore import DocStore
    from kgrag.kg.build import latest_build_reports

    test = list(test_ids)
    own_doc = docstore is None
    docstore = docstore or DocStore.from_settings(settings)
    try:
        splits = docstore.splits()
    finally:
        if own_doc:
            docstore.close()
    idx_path = Path(settings.index_dir) / "manifest.json"
    index_meta = json.loads(idx_path.read_text()) if idx_path.is_file() else None
    text_ids = Path(settings.index_dir) / "text" / "ids.json"
    index_ids = json.loads(text_ids.read_text()) if text_ids.is_file() else []
    model_path = Path(settings.models_dir) / model_name / "manifest.json"
    model_manifest = json.loads(model_path.read_text()) if model_path.is_file() else None
    own_store = store is None
    if store is None:
        from kgrag.graph.factory import open_store

        store = open_store(settings)
    try:
        edges = store.edges()
    finally:
        if own_store:
            store.close()
    builds = latest_build_reports(settings, 1)
    leaks = find_leaks(test, docstore_splits=splits, index_meta=index_meta, index_ids=index_ids, graph_edges=edges,
                       graph_build=builds[-1] if builds else None, model_manifest=model_manifest)
    if leaks:
        first = leaks[0]
        more = "; ".join(f"{x['component']}: {x['message']}" for x in leaks[1:])
        raise InputError(f"this home saw test studies of the manifest: {first['component']}: {first['message']}"
                         + (f"; also {more}" if more else ""), fix=first["fix"])
    return {"checked": ["docstore splits", "index manifest splits and ids", "graph edge provenance",
                        "graph build train count", "model manifest"],
            "n_test": len(test), "n_test_in_docstore": sum(1 for i in test if i in splits),
            "docstore_counts": {s: sum(1 for v in splits.values() if v == s) for s in ("train", "val", "test")}}

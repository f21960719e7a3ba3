"""Scratch copies of a home for the graph-dependent ablations (τ sweep, random graph).

A scratch home holds a copy of the user's docstore (SQLite backup API, so a WAL in
use is copied consistently), models and indexes, and a graph of its own on a
private embedded FalkorDB under the scratch directory — whatever backend the user's
home uses, so nothing is ever written to the user's graph, docstore, models or
indexes.  The graph is rebuilt there:

- ``tau``: the user's graph is copied first (so reviewed, locked edges keep their
  decision, as ``kgrag kg build`` would keep them at home), then ``kgrag kg build``
  runs on the copied docstore with the new retention ratio;
- ``random``: the user's concepts (with their leaks) and a random DAG
  (:func:`kgrag.eval.ablation.random_dag`) replace the edges.

The index's vectors do not depend on the graph, so the copied index is re-stamped
with the new graph version (``IndexSet.save`` gives it a new index version) instead
of being re-encoded; the pipeline then opens it as usual.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _copy_sqlite(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    a = sqlite3.connect(str(src))
    b = sqlite3.connect(str(dst))
    try:
        a.backup(b)
    finally:
        b.close()
        a.close()


def restamp_index(index_dir: Path, graph_version: str) -> str:
    """Record ``graph_version`` in a (scratch) index; returns the new index version."""
    from kgrag.index.indexset import IndexSet

    idx = IndexSet.load(index_dir)
    idx.meta["graph_version"] = graph_version
    for sp in idx.spaces.values():
        sp.manifest["graph_version"] = graph_version
    idx.save()
    return idx.version


class ScratchHomes:
    """Scratch homes under one temporary directory; :meth:`close` stops their graph
    servers and removes them (unless ``keep``)."""

    def __init__(self, settings: Any, root: str | Path | None = None, *, keep: bool = False) -> None:
        self.settings = settings
        # short path: the embedded server's Unix socket lives under it (108-byte limit)
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="kgrag-eval-"))
        self.keep = keep
        self.homes: dict[str, Any] = {}

    def _settings_for(self, home: Path, **kg: Any) -> Any:
        from kgrag.config import FalkorDBSettings, GraphSettings, load_settings

        s = self.settings
        return load_settings(home, graph=GraphSettings(backend="falkordb", name="kgrag", batch_size=s.graph.batch_size),
                             falkordb=FalkorDBSettings(start_timeout_s=s.falkordb.start_timeout_s),
                             kg=s.kg.model_copy(update=kg), retrieval=s.retrieval, models=s.models,
                             extractor=s.extractor, ingest=s.ingest)

    def _copy(self, name: str, **kg: Any) -> Any:
        home = self.root / name
        if home.exists():
            shutil.rmtree(home)
        home.mkdir(parents=True)
        s = self._settings_for(home, **kg)
        _copy_sqlite(Path(self.settings.docstore_path), Path(s.docstore_path))
        for src, dst in ((self.settings.models_dir, s.models_dir), (self.settings.index_dir, s.index_dir)):
            if Path(src).is_dir():
                shutil.copytree(src, dst)
        self.homes[name] = s
        return s

    def with_tau(self, name: str, tau: float, source_graph: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """A scratch home whose graph is rebuilt with retention ratio ``tau``."""
        from kgrag.graph.factory import open_store
        from kgrag.kg.build import build_graph

        s = self._copy(name, tau=float(tau))
        store = open_store(s)
        try:
            store.import_(source_graph)
            rep = build_graph(s, store=store, progress=False)
        finally:
            store.close()
        info = {"graph_version": rep.graph_version, "accepted": rep.n_accepted, "tau": tau,
                "index_version": restamp_index(Path(s.index_dir), rep.graph_version)}
        return s, info

    def with_random_graph(self, name: str, source_graph: dict[str, Any], build_params: dict[str, Any] | None,
                          seed: int) -> tuple[Any, dict[str, Any]]:
        """A scratch home whose accepted edges are a random DAG like the learned one."""
        from kgrag.eval.ablation import is_dag, random_dag
        from kgrag.graph.factory import open_store

        s = self._copy(name)
        concepts = source_graph.get("concepts", [])
        roles = {c["id"]: c["role"] for c in concepts}
        edges = random_dag(source_graph.get("edges", []), roles, seed=seed)
        if not is_dag(edges):  # random_dag orders the findings, so this cannot happen
            raise RuntimeError("the random graph has a cycle")
        store = open_store(s)
        try:
            store.upsert_concepts(concepts)
            store.upsert_edges([{**e, "source": "statistics", "extractor": "kgrag.eval.random_graph",
                                 "extractor_version": "random_dag.v1",
                                 "note": f"random DAG for the random-graph ablation (seed {seed})"} for e in edges])
            params = {**(build_params or {}), "graph": "random_dag.v1", "seed": seed}
            store.set_meta("build_params", params)
            version = store.version(params)
            n = len(store.edges("accepted"))
        finally:
            store.close()
        info = {"graph_version": version, "accepted": n, "seed": seed,
                "learned_accepted": sum(1 for e in source_graph.get("edges", []) if e.get("status") == "accepted"),
                "index_version": restamp_index(Path(s.index_dir), version)}
        return s, info

    def close(self) -> None:
        from kgrag.graph.falkordb_server import EmbeddedFalkorDB

        for s in self.homes.values():
            try:
                EmbeddedFalkorDB(s.graph_dir).stop()
            except Exception as e:  # a server that never started, or is gone already
                log.debug("stopping the scratch graph server in %s: %s", s.graph_dir, e)
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

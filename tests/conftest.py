"""Shared fixtures and test tiers.

- ``tests/unit``: pure, offline; any socket connect fails the test.
- ``tests/contract`` and ``tests/integration``: marked ``integration``; may start the
  embedded FalkorDB in a tmp dir and talk to 127.0.0.1 fakes.
- ``tests/reliability``: marked ``reliability``: each case reproduces a hardening defect
  (faulty inputs, kill -9, full or read-only disks, foreign processes) and checks the fix.
- ``tests/security``: marked ``security``: file modes, socket ownership, listeners, secrets.
- ``slow`` and ``neo4j`` are opt-in (see setup.cfg addopts); the others run by default.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_TESTS = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        p = Path(str(item.fspath))
        if _TESTS / "contract" in p.parents or _TESTS / "integration" in p.parents:
            item.add_marker(pytest.mark.integration)
        if _TESTS / "reliability" in p.parents:
            item.add_marker(pytest.mark.reliability)
        if _TESTS / "security" in p.parents:
            item.add_marker(pytest.mark.security)


@pytest.fixture(autouse=True)
def _block_sockets(request, monkeypatch):
    """Unit tests open no sockets (network or Unix)."""
    p = Path(str(request.node.fspath))
    if _TESTS / "unit" not in p.parents:
        yield
        return
    real_connect = socket.socket.connect

    def guarded(self, address):  # pragma: no cover - only hit by a faulty test
        raise RuntimeError(
            f"unit test tried to connect to {address!r}; mark it integration "
            "(put it under tests/integration) or use a fake"
        )

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield
    monkeypatch.setattr(socket.socket, "connect", real_connect)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own KGRAG_HOME unless it sets one."""
    monkeypatch.setenv("KGRAG_HOME", str(tmp_path / "kgrag-home"))
    for k in list(os.environ):
        if k.startswith("KGRAG_") and k not in ("KGRAG_HOME",) and not k.startswith("KGRAG_TEST_"):
            monkeypatch.delenv(k, raising=False)
    yield
    # stop any embedded graph server a test started under its tmp dir
    for pid in tmp_path.rglob("falkordb.pid"):
        from kgrag.graph.falkordb_server import EmbeddedFalkorDB

        EmbeddedFalkorDB(pid.parent).stop()


@pytest.fixture(scope="session")
def falkordb_server(tmp_path_factory):
    """One embedded FalkorDB server for the whole test session (Unix socket only)."""
    from kgrag.graph.falkordb_server import EmbeddedFalkorDB

    srv = EmbeddedFalkorDB(tmp_path_factory.mktemp("falkordb") / "graph")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def falkordb_store(falkordb_server):
    """A FalkorDBStore on a fresh, uniquely named graph; dropped afterwards."""
    from kgrag.graph.falkordb_store import FalkorDBStore

    store = FalkorDBStore.from_server(falkordb_server, graph_name="t_" + uuid.uuid4().hex[:12])
    store.ensure_schema()
    yield store
    try:
        store.drop()
    finally:
        store.close()


@pytest.fixture(scope="session")
def synth_graph_home(tmp_path_factory):
    """The shared synth → ingest → graph build fixture.

    ``synth_graph_home(n, seed)`` returns ``(settings, corpus_dir, build_report)``: a phantom corpus
    of ``n`` studies (``corpus_dir/manifest.jsonl``, ``truth.json``), ingested into a
    fresh KGRAG_HOME whose causal graph is built (embedded FalkorDB).  Homes are made
    once per (n, seed) per session; tests that change a home must copy it first.
    """
    from kgrag.config import load_settings
    from kgrag.graph.falkordb_server import EmbeddedFalkorDB
    from kgrag.ingest.pipeline import ingest
    from kgrag.kg.build import build_graph
    from kgrag.synth.generate import generate

    made: dict[tuple[int, int], tuple] = {}

    def make(n: int = 240, seed: int = 2):
        if (n, seed) not in made:
            tmp = tmp_path_factory.mktemp(f"synth{n}s{seed}")
            generate(tmp / "c", n, seed=seed, progress=False)
            s = load_settings(tmp / "home")
            ingest(s, tmp / "c" / "manifest.jsonl", progress=False)
            rep = build_graph(s, progress=False)
            made[(n, seed)] = (s, tmp / "c", rep)
        return made[(n, seed)]

    yield make
    for s, _, _ in made.values():
        EmbeddedFalkorDB(s.graph_dir).stop()


# -- shared by tests/reliability and tests/security ---------------------------------------
N_STUDIES = 160


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A 160-study synthetic corpus (manifest path), made once per session."""
    from kgrag.synth.generate import generate

    d = tmp_path_factory.mktemp("corpus")
    generate(d / "c", N_STUDIES, seed=7, progress=False)
    return d / "c" / "manifest.jsonl"


@pytest.fixture(scope="session")
def trained(tmp_path_factory, corpus):
    """(settings, manifest) of a home with docstore, graph, model and indexes."""
    from kgrag.config import load_settings
    from kgrag.graph.falkordb_server import EmbeddedFalkorDB
    from kgrag.index.indexset import build_from_settings
    from kgrag.ingest.pipeline import ingest
    from kgrag.kg.build import build_graph
    from kgrag.model.train import train

    s = load_settings(tmp_path_factory.mktemp("trained") / "home")
    try:
        ingest(s, corpus, progress=False)
        build_graph(s)
        train(s, epochs=1, batch_size=32, progress=False)
        build_from_settings(s, progress=False)
        yield s, corpus
    finally:
        EmbeddedFalkorDB(s.graph_dir).stop()

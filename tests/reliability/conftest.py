"""Session fixtures of the reliability suite: one synthetic corpus, and one home that
has been ingested, built, trained (one epoch) and indexed, for the cases that need it."""

from __future__ import annotations

import pytest

N_STUDIES = 160


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
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


@pytest.fixture
def need_mount():
    from tests.reliability.helpers import mount_unavailable

    why = mount_unavailable()
    if why:
        pytest.skip(f"no tiny or read-only filesystem can be mounted here: {why}")

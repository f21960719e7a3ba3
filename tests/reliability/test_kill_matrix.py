"""kill -9 at chosen points of every long write, then a plain rerun: the rerun must give
the same counts and content hashes as a run that was never interrupted.

Matrix: ingest at 3 points, ``kg build``, ``index build``, ``curate import``, and the
graph server killed in the middle of a query (and of an import).  Each kill is placed
at a named call (tests/reliability/killer.py), so the case is the same on every run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from kgrag.config import load_settings
from kgrag.graph.falkordb_server import EmbeddedFalkorDB
from kgrag.ingest.pipeline import ingest
from tests.reliability.helpers import (
    clone_home,
    docstore_content,
    env_for,
    graph_content,
    index_content,
    kgrag,
    killed,
)

SMALL_BATCHES = "kgrag.ingest.pipeline:BATCH=40"


@pytest.fixture(scope="module")
def ingested(corpus, tmp_path_factory):
    """Content of an uninterrupted ingest of the corpus."""
    s = load_settings(tmp_path_factory.mktemp("ref") / "home")
    ingest(s, corpus, progress=False)
    ref = {"docstore": docstore_content(s), "graph": graph_content(s)}
    EmbeddedFalkorDB(s.graph_dir).stop()
    return ref


INGEST_POINTS = {
    "docstore-written-graph-not": "kgrag.docstore:DocStore.write_batch:after:2",
    "graph-half-written": "kgrag.graph.cypher_store:CypherGraphStore.delete_mentions:after:2",
    "graph-written-not-marked": "kgrag.docstore:DocStore.mark_synced:before:2",
}


@pytest.mark.parametrize("point", list(INGEST_POINTS))
def test_kill_ingest(point, corpus, ingested, tmp_path):
    home = tmp_path / "home"
    r = killed(home, INGEST_POINTS[point], "ingest", str(corpus), env=env_for(home, KGRAG_TEST_SET=SMALL_BATCHES))
    assert r.returncode == -9, r.stderr[-3000:]
    s = load_settings(home)
    partial = docstore_content(s)["counts"]
    assert partial["studies"] < 160 or partial["unsynced"] > 0, partial  # really interrupted
    ingest(s, corpus, progress=False)  # the plain rerun (in this process: spaCy is loaded once)
    assert docstore_content(s) == ingested["docstore"]
    assert graph_content(s) == ingested["graph"]
    EmbeddedFalkorDB(s.graph_dir).stop()


def test_kill_the_server_during_ingest(corpus, ingested, tmp_path):
    """The engine dies between a batch's delete and its new ASSERTS; the run restarts it."""
    home = tmp_path / "home"
    spec = "kgrag.graph.cypher_store:CypherGraphStore.upsert_mentions:before:2::server"
    r = killed(home, spec, "ingest", str(corpus), env=env_for(home, KGRAG_TEST_SET=SMALL_BATCHES))
    assert r.returncode == 0 and "SIGKILL sent to the FalkorDB server" in r.stderr, r.stderr[-3000:]
    s = load_settings(home)
    ingest(s, corpus, progress=False)
    assert docstore_content(s) == ingested["docstore"]
    assert graph_content(s) == ingested["graph"]
    EmbeddedFalkorDB(s.graph_dir).stop()


def test_kill_kg_build(trained, tmp_path):
    s0, _ = trained
    want = graph_content(s0)
    home = clone_home(s0.home, tmp_path / "home")
    s = load_settings(home)
    from kgrag.graph.factory import open_store

    store = open_store(s)
    store.delete_edges([(e["src"], e["dst"]) for e in store.edges()])
    store.close()
    spec = "kgrag.graph.cypher_store:CypherGraphStore._run:after:2:merge_edges"
    r = killed(home, spec, "kg", "build", env=env_for(home, KGRAG_GRAPH__BATCH_SIZE="5"))
    assert r.returncode == -9, r.stderr[-3000:]
    assert 0 < graph_content(s)["n_edges"] < want["n_edges"]  # killed between edge batches
    kgrag(home, "kg", "build", check=True)
    assert graph_content(s) == want
    kgrag(home, "db", "stop")


def test_kill_index_build(trained, tmp_path):
    from kgrag.index.indexset import build_from_settings

    s0, _ = trained
    want = index_content(s0)
    home = clone_home(s0.home, tmp_path / "home")
    s = load_settings(home)
    # killed between moving the old index aside and moving the new one in
    r = killed(home, "pathlib:Path.rename:before:2", "index", "build", "--no-progress")
    assert r.returncode == -9, r.stderr[-3000:]
    assert not s.index_dir.exists() and (home / "indexes.old").is_dir() and (home / "indexes.tmp").is_dir()
    assert index_content(s) == want  # loading restores the previous index
    build_from_settings(s, progress=False)  # the plain rerun
    assert index_content(s) == want
    assert not (home / "indexes.old").exists() and not (home / "indexes.tmp").exists()
    EmbeddedFalkorDB(s.graph_dir).stop()


def _reviewed_sheet(home: Path, out: Path) -> Path:
    kgrag(home, "curate", "export", str(out), check=True)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for i, r in enumerate(rows):
            w.writerow({**r, "status": "rejected" if i % 2 else "accepted", "reviewed_by": "ana",
                        "reviewed_at": "2026-01-02T03:04:05+00:00", "note": f"row {i}"})
    return out


def test_kill_curate_import(trained, tmp_path):
    s0, _ = trained
    ref_home = clone_home(s0.home, tmp_path / "ref")
    sheet = _reviewed_sheet(ref_home, tmp_path / "review.csv")
    n = json.loads(kgrag(ref_home, "curate", "import", str(sheet), "--json", check=True).stdout)["applied"]
    assert n >= 10
    want = graph_content(load_settings(ref_home))
    kgrag(ref_home, "db", "stop")

    home = clone_home(s0.home, tmp_path / "home")
    s = load_settings(home)
    before = graph_content(s)
    apply = "kgrag.graph.cypher_store:CypherGraphStore.apply_reviews"
    assert killed(home, f"{apply}:before:1", "curate", "import", str(sheet)).returncode == -9
    assert graph_content(s) == before  # none of the rows
    assert killed(home, f"{apply}:after:1", "curate", "import", str(sheet)).returncode == -9
    assert graph_content(s) == want  # all of them, in one transaction
    kgrag(home, "curate", "import", str(sheet), check=True)
    assert graph_content(s) == want
    # the server killed right before the statement: the import restarts it and applies all
    home2 = clone_home(s0.home, tmp_path / "home2")
    r = killed(home2, f"{apply}:before:1::server", "curate", "import", str(sheet), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["applied"] == n
    assert graph_content(load_settings(home2)) == want
    for h in (home, home2):
        kgrag(h, "db", "stop")


def _answer(stdout: str) -> dict:
    res = json.loads(stdout)
    res.pop("trace", None)
    res["config"].pop("seconds", None)
    return res


def test_kill_the_server_mid_query(trained):
    from kgrag.query.pipeline import Query, QueryPipeline

    s, _ = trained
    findings, question = "Right lower lobe consolidation.", "Is there pneumonia?"
    pipe = QueryPipeline.from_settings(s)
    try:  # the uninterrupted answer, as `kgrag query --json` prints it
        want = _answer(json.dumps(pipe.run(Query(findings=findings, question=question))))
    finally:
        pipe.close()
    assert want["evidence"] and want["diagnoses"]
    # the server is killed as the query's graph statements are sent; the query restarts it
    spec = "kgrag.graph.falkordb_store:FalkorDBStore._send:before:1::server"
    r = killed(s.home, spec, "query", "--findings", findings, "--question", question, "--json")
    assert r.returncode == 0 and "SIGKILL sent" in r.stderr, r.stderr[-3000:]
    assert _answer(r.stdout) == want

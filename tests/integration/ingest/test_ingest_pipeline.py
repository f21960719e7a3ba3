"""End-to-end ingest on the embedded FalkorDB: bad records, idempotence, changes, kill -9 and resume,
and the graph kept in step with the docstore."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from kgrag.config import load_settings
from kgrag.docstore import DocStore
from kgrag.ingest.pipeline import ingest


def _manifest(tmp_path, n=30, extra=b""):
    from kgrag.synth.generate import generate

    generate(tmp_path / "c", n, seed=5, progress=False)
    m = tmp_path / "c" / "manifest.jsonl"
    if extra:
        m.write_bytes(m.read_bytes() + extra)
    return m


BAD = (
    b'{"id": "bad-json"\n'
    b'{"report": "no id here"}\n'
    b'{"id": "syn-00000", "report": "duplicate id"}\n'
    b'{"id": "utf", "report": "caf\xe9"}\n'
    b'{"id": "empty", "report": "   "}\n'
    b'{"id": "huge", "report": "' + b"x" * 30000 + b'"}\n'
    b'{"id": "badimg", "report": "No pneumothorax.", "images": ["img/missing.png"]}\n'
    b'{"id": "badsplit", "report": "Clear.", "split": "dev"}\n'
)


def test_bad_records_reported_rest_lands(tmp_path):
    s = load_settings(tmp_path / "home")
    m = _manifest(tmp_path, 20, BAD)
    rep = ingest(s, m, progress=False)
    assert rep.n_read == 28 and rep.n_written == 21 and rep.n_failed == 7
    assert rep.n_image_errors == 1
    lines = [json.loads(x) for x in open(rep.report_path)]
    kinds = {e["record"]: e for e in lines}
    assert "bad JSON" in kinds["manifest.jsonl:21"]["error"]
    assert "missing 'id'" in kinds["manifest.jsonl:22"]["error"]
    assert "duplicate id" in kinds["manifest.jsonl:23"]["error"]
    assert "UTF-8" in kinds["manifest.jsonl:24"]["error"]
    assert "empty report" in kinds["manifest.jsonl:25"]["error"]
    assert "over the limit" in kinds["manifest.jsonl:26"]["error"]
    assert all(e["fix"] for e in lines)
    with DocStore.from_settings(s) as ds:
        assert ds.get_study("badimg").images == []  # kept text-only
        assert len(ds.study_ids()) == 21
    from kgrag.errors import InputError

    with pytest.raises(InputError, match="7 record"):
        ingest(s, m, progress=False, strict=True)


def test_idempotent_and_changes_update(tmp_path):
    from kgrag.graph.factory import open_store

    s = load_settings(tmp_path / "home")
    m = _manifest(tmp_path, 25)
    r1 = ingest(s, m, progress=False)
    with DocStore.from_settings(s) as ds:
        d1 = ds.dump()
    store = open_store(s)
    g1 = store.counts()
    r2 = ingest(s, m, progress=False)
    assert r1.n_written == 25 and r2.n_written == 0 and r2.n_unchanged == 25
    with DocStore.from_settings(s) as ds:
        assert ds.dump() == d1
    assert store.counts() == g1
    rows = [json.loads(x) for x in m.read_text().splitlines()]
    rows[0]["findings"] = "Large right pleural effusion."
    rows[0]["impression"] = "Congestive heart failure."
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r3 = ingest(s, m, progress=False)
    assert r3.n_written == 1
    with DocStore.from_settings(s) as ds:
        assert ds.study_concepts()[rows[0]["id"]] == {"pleural_effusion": "present", "heart_failure": "present"}
    assert store.counts()["studies"] == 25 and store.counts()["concepts"] >= 27
    store.close()


KILLER = """
import os, signal, sys
import kgrag.ingest.pipeline as p
from kgrag.config import load_settings
from kgrag.graph.factory import open_store

p.BATCH = 50
store = open_store(load_settings(sys.argv[1]))
real, n = store.delete_mentions, [0]


def delete_then_die(ids):  # SIGKILL between a batch's delete and its new ASSERTS
    out = real(ids)
    n[0] += 1
    if n[0] == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return out


store.delete_mentions = delete_then_die
p.ingest(load_settings(sys.argv[1]), sys.argv[2], progress=False, store=store)
"""


def test_kill_and_resume_matches_uninterrupted(tmp_path):
    from kgrag.graph.factory import open_store

    m = _manifest(tmp_path, 400)
    ref = load_settings(tmp_path / "ref")
    ingest(ref, m, progress=False)
    home = tmp_path / "killed"
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    r = subprocess.run([sys.executable, str(script), str(home), str(m)], capture_output=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr.decode()[-2000:]
    with DocStore(home / "docstore.sqlite") as ds:
        assert ds.counts()["unsynced"] > 0  # killed with the graph behind the docstore
    s = load_settings(home)
    # a second kill, this time at an arbitrary moment of a plain CLI run
    env = {**os.environ, "KGRAG_HOME": str(home)}
    p = subprocess.Popen([sys.executable, "-m", "kgrag", "ingest", str(m)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(4.0)
    p.send_signal(signal.SIGKILL)
    p.wait()
    ingest(s, m, progress=False)
    with DocStore.from_settings(ref) as a, DocStore.from_settings(s) as b:
        assert a.dump() == b.dump()
        assert b.counts()["unsynced"] == 0
        ids = set(b.study_ids())
    sa, sb = open_store(ref), open_store(s)
    assert sa.counts() == sb.counts()
    assert sb.study_ids() == ids
    sa.close()
    sb.close()


def test_graph_matches_docstore_on_falkordb(tmp_path, falkordb_store):
    """Study nodes and one ASSERTS per (study, concept) land in the real store; a rerun
    and a changed record keep the graph in step with the docstore."""
    s = load_settings(tmp_path / "home")
    m = _manifest(tmp_path, 15)
    ingest(s, m, progress=False, store=falkordb_store)

    def expected():
        with DocStore.from_settings(s) as ds:
            level = ds.study_concepts()
        return set(level), sum(len(v) for v in level.values())

    ids, n_asserts = expected()
    assert falkordb_store.study_ids() == ids
    c1 = falkordb_store.counts()
    assert c1["asserts"] == n_asserts and c1["studies"] == 15
    ingest(s, m, progress=False, store=falkordb_store)
    assert falkordb_store.counts() == c1
    rows = [json.loads(x) for x in m.read_text().splitlines()]
    rows[1] = {"id": rows[1]["id"], "report": "No pleural effusion. No pneumothorax. Cardiomegaly."}
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ingest(s, m, progress=False, store=falkordb_store)
    ids, n_asserts = expected()
    assert falkordb_store.counts()["asserts"] == n_asserts

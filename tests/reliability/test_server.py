"""The embedded FalkorDB server: who owns a home, what a sick server says, restarts.

Defects covered: 1 (a stale pidfile killed an unrelated process), 2 (a full disk left
several servers on one home), 13 (restart time grew with the AOF), 14a (a home path
with a quote stopped the server), 14b (CRITICAL lines on every reload)."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.reliability.helpers import assert_clean_failure, fill, kgrag, servers_on, tmpfs


def _provoke_misconf(store) -> None:
    """Write until the server has tried to flush its AOF and answers MISCONF (the write
    that fills the disk is still acknowledged: Redis writes its AOF after replying)."""
    from kgrag.errors import GraphUnavailableError

    for i in range(20):
        try:
            store.upsert_concepts([{"id": f"big{i}", "role": "Finding", "definition": "y" * 200_000}])
        except GraphUnavailableError as e:
            assert "disk is full" in e.message and "free disk space" in e.fix
            return
        time.sleep(0.3)
    raise AssertionError("the server never reported the full disk")


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "1000"], start_new_session=True)


def test_d01_stale_pidfile_never_kills_an_unrelated_process(tmp_path):
    home = tmp_path / "home"
    kgrag(home, "db", "start", check=True)
    kgrag(home, "db", "stop", check=True)
    victim = _sleeper()
    try:
        pidfile = home / "graph" / "falkordb.pid"
        pidfile.write_text(f"{victim.pid}\n")
        st = json.loads(kgrag(home, "db", "start", "--json", check=True).stdout)
        assert st["running"] and st["pid"] != victim.pid
        assert victim.poll() is None, "db start signalled the process named by a stale pidfile"
        # the same pidfile trick while the server runs: db stop stops the server, not the sleep
        pidfile.write_text(f"{victim.pid}\n")
        assert json.loads(kgrag(home, "db", "stop", "--json", check=True).stdout)["stopped"] is True
        assert victim.poll() is None, "db stop signalled the process named by the pidfile"
        assert not servers_on(home / "graph" / "kg.sock")
        # and with no server at all, stop only removes the stale pidfile
        pidfile.write_text(f"{victim.pid}\n")
        assert json.loads(kgrag(home, "db", "stop", "--json", check=True).stdout)["stopped"] is False
        assert victim.poll() is None and not pidfile.exists()
    finally:
        victim.kill()
        victim.wait()


def test_d01_a_foreign_holder_of_the_lock_is_reported_not_signalled(tmp_path):
    from kgrag.graph.falkordb_server import EmbeddedFalkorDB

    home = tmp_path / "home"
    kgrag(home, "db", "start", check=True)
    kgrag(home, "db", "stop", check=True)
    lock = home / "graph" / "server.lock"
    holder = subprocess.Popen(["flock", "-x", str(lock), "sleep", "1000"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not EmbeddedFalkorDB(home / "graph").lock_held():
            assert time.monotonic() < deadline and holder.poll() is None, "flock did not take the lock"
            time.sleep(0.05)
        r = kgrag(home, "db", "start")
        assert_clean_failure(r, "not a FalkorDB server of this home")
        assert holder.poll() is None
        assert not servers_on(home / "graph" / "kg.sock"), "a server was started beside the lock holder"
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()


def test_d01_processes_are_verified_in_proc(tmp_path):
    from kgrag.graph.falkordb_server import EmbeddedFalkorDB

    srv = EmbeddedFalkorDB(tmp_path / "graph")
    srv.start()
    try:
        pid = srv.pid()
        assert srv.is_our_server(pid)
        other = EmbeddedFalkorDB(tmp_path / "other" / "graph")
        assert not other.is_our_server(pid), "a server of another home passed as ours"
        victim = _sleeper()
        try:
            assert not srv.is_our_server(victim.pid)
        finally:
            victim.kill()
            victim.wait()
        assert srv.server_pids() == [pid]
    finally:
        srv.stop()


def test_d01_a_stopped_server_is_replaced_only_after_its_identity_is_checked(tmp_path):
    """SIGSTOP: the server holds the lock but never answers; it is ours, so it is stopped
    and replaced, and exactly one server runs afterwards."""
    home = tmp_path / "home"
    st = json.loads(kgrag(home, "db", "start", "--json", check=True).stdout)
    os.kill(st["pid"], signal.SIGSTOP)
    try:
        st2 = json.loads(kgrag(home, "db", "start", "--json", check=True).stdout)
        assert st2["running"] and st2["pid"] != st["pid"]
        assert servers_on(st2["socket"]) == [st2["pid"]]
    finally:
        try:
            os.kill(st["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
        kgrag(home, "db", "stop")


def test_d02_full_disk_under_the_graph_is_reported_and_never_doubles_the_server(tmp_path, need_mount):
    import csv

    home = tmp_path / "home"
    graph = home / "graph"
    with tmpfs(graph, "8m"):
        kgrag(home, "db", "start", check=True)
        from kgrag.config import load_settings
        from kgrag.graph.factory import open_store

        s = load_settings(home)
        store = open_store(s)
        store.upsert_concepts([{"id": f"c{i}", "role": "Finding"} for i in range(30)]
                              + [{"id": "d", "role": "Diagnosis"}])
        store.upsert_edges([{"src": f"c{i}", "dst": "d", "p": 0.5} for i in range(30)])
        store.close()
        sheet = tmp_path / "review.csv"
        kgrag(home, "curate", "export", str(sheet), check=True)
        rows = list(csv.DictReader(sheet.open()))
        with sheet.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            for r in rows:
                w.writerow({**r, "status": "accepted", "reviewed_by": "ana", "note": "x" * 4000})
        fill(graph / "filler")
        # a write the AOF cannot take: the server answers MISCONF from now on
        store = open_store(s)
        _provoke_misconf(store)
        store.close()
        before = servers_on(graph / "kg.sock")
        assert len(before) == 1
        for args in (["db", "start"], ["kg", "show"], ["curate", "import", str(sheet)]):
            r = kgrag(home, *args)
            assert_clean_failure(r, "disk is full", "free disk space")
            assert servers_on(graph / "kg.sock") == before, f"{args}: the server was replaced or doubled"
        st = json.loads(kgrag(home, "db", "status", "--json", check=True).stdout)
        assert st["health"] == "disk_full" and "free disk space" in st["fix"] and st["pid"] == before[0]
        # nothing of the import landed: the graph still holds the exported state
        os.unlink(graph / "filler")
        deadline = time.monotonic() + 20
        while json.loads(kgrag(home, "db", "status", "--json").stdout)["health"] != "ok":
            assert time.monotonic() < deadline, "the server did not recover once space was freed"
            time.sleep(0.5)
        store = open_store(s)
        assert {e["status"] for e in store.edges()} == {"proposed"}
        store.close()
        assert servers_on(graph / "kg.sock") == before
        # with the disk full again, stop refuses (the server could not save), --force stops it
        fill(graph / "filler")
        store = open_store(s)
        _provoke_misconf(store)
        store.close()
        assert_clean_failure(kgrag(home, "db", "stop"), "--force")
        assert servers_on(graph / "kg.sock") == before
        assert json.loads(kgrag(home, "db", "stop", "--force", "--json", check=True).stdout)["stopped"] is True
        assert not servers_on(graph / "kg.sock")


def test_d13_start_timeout_grows_with_the_aof_and_big_writes_compact_it(tmp_path, corpus, monkeypatch):
    import kgrag.graph.falkordb_server as fs
    from kgrag.config import load_settings
    from kgrag.ingest.pipeline import ingest

    srv = fs.EmbeddedFalkorDB(tmp_path / "home" / "graph", start_timeout_s=20)
    aof = srv.graph_dir / fs.AOF_DIR
    aof.mkdir(parents=True)
    assert srv.start_timeout() == 20
    (aof / "kg.aof.1.incr.aof").write_bytes(b"\0" * (5 * 1024 * 1024))
    assert srv.start_timeout() == pytest.approx(20 + 5 * 1024 * 1024 / fs.INCR_BYTES_PER_S)
    (aof / "kg.aof.1.incr.aof").unlink()
    aof.rmdir()

    # an ingest whose statement log outgrows the threshold rewrites it into a snapshot
    monkeypatch.setattr(fs, "COMPACT_MIN_INCR_BYTES", 64 * 1024)
    s = load_settings(tmp_path / "home")
    ingest(s, corpus, progress=False)
    deadline = time.monotonic() + 30
    while srv.aof_sizes()[1] > 64 * 1024 or srv.status().get("health") != "ok":
        assert time.monotonic() < deadline, f"AOF not rewritten: {srv.aof_sizes()}"
        time.sleep(0.2)
    base, incr = srv.aof_sizes()
    assert base > incr
    srv.stop()
    t0 = time.perf_counter()
    srv.start()
    restart = time.perf_counter() - t0
    from kgrag.graph.factory import open_store

    store = open_store(s)
    assert store.counts()["studies"] == 160
    store.close()
    srv.stop()
    assert restart < 10, restart


def test_d13_loading_shows_progress(tmp_path, monkeypatch, capsys):
    import kgrag.graph.falkordb_server as fs

    srv = fs.EmbeddedFalkorDB(tmp_path / "graph")
    t0 = time.monotonic()
    monkeypatch.setattr(srv, "health", lambda timeout=2.0: fs.Health(
        "ok" if time.monotonic() - t0 > 2.2 else "loading", "LOADING Redis is loading the dataset in memory"))
    monkeypatch.setattr(srv, "lock_held", lambda: True)
    srv._wait_ready(30, progress=True)
    assert "graph server loading" in capsys.readouterr().err


def test_d14a_config_values_are_escaped(tmp_path):
    home = tmp_path / 'we"ird \\ home'
    st = json.loads(kgrag(home, "db", "start", "--json", check=True).stdout)
    try:
        assert st["running"] and Path(st["socket"]).is_socket()
        r = kgrag(home, "kg", "show", "--json", check=True)
        assert json.loads(r.stdout)["counts"]["concepts"] == 0
    finally:
        kgrag(home, "db", "stop")


def test_d14b_reloads_log_no_critical_lines(tmp_path):
    home = tmp_path / "home"
    for _ in range(3):
        kgrag(home, "kg", "show", check=True)  # opens the store: ensure_schema each time
        kgrag(home, "db", "stop", check=True)
    kgrag(home, "db", "start", check=True)
    kgrag(home, "db", "stop", check=True)
    log = (home / "graph" / "falkordb.log").read_text()
    assert "CRITICAL" not in log, [ln for ln in log.splitlines() if "CRITICAL" in ln][:3]


def test_lock_is_released_when_the_server_dies(tmp_path):
    from kgrag.graph.falkordb_server import EmbeddedFalkorDB

    srv = EmbeddedFalkorDB(tmp_path / "graph")
    srv.start()
    pid = srv.pid()
    assert srv.lock_held()
    fd = os.open(srv.lock_path, os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while srv.lock_held():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    srv.start()
    assert srv.pid() != pid and srv.running()
    srv.stop()

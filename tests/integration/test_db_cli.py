"""`kgrag db`: Unix socket only, private files, status, and recovery after kill -9."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest


def kgrag(home, *args, check=True):
    env = {**os.environ, "KGRAG_HOME": str(home)}
    r = subprocess.run([sys.executable, "-m", "kgrag", *args], capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def _tcp_inodes():
    inodes = set()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(f).read_text().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            parts = ln.split()
            if parts[3] == "0A":  # LISTEN
                inodes.add(parts[9])
    return inodes


def _socket_inodes(pid):
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            t = os.readlink(fd)
        except OSError:
            continue
        if t.startswith("socket:["):
            out.add(t[8:-1])
    return out


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    yield h
    kgrag(h, "db", "stop", check=False)


def test_start_status_stop_and_recover(home):
    st = json.loads(kgrag(home, "db", "start", "--json").stdout)
    assert st["running"] and not st["already_running"]
    pid = st["pid"]
    graph_dir = home / "graph"
    assert stat.S_IMODE(graph_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((graph_dir / "password").stat().st_mode) == 0o600
    assert Path(st["socket"]).is_socket()
    # no TCP listener belongs to the server
    assert not (_socket_inodes(pid) & _tcp_inodes())
    # a second start is a no-op
    again = json.loads(kgrag(home, "db", "start", "--json").stdout)
    assert again["already_running"] and again["pid"] == pid
    status = json.loads(kgrag(home, "db", "status", "--json").stdout)
    assert status["running"] and status["pid"] == pid and "graphs" in status

    # kill -9, then any graph command recovers the server
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    assert json.loads(kgrag(home, "db", "status", "--json").stdout)["running"] is False
    r = kgrag(home, "doctor", "--json", check=False)
    graph = [c for c in json.loads(r.stdout)["checks"] if c["name"] == "graph"][0]
    assert graph["status"] == "ok", graph
    st2 = json.loads(kgrag(home, "db", "status", "--json").stdout)
    assert st2["running"] and st2["pid"] != pid

    assert json.loads(kgrag(home, "db", "stop", "--json").stdout)["stopped"] is True
    assert json.loads(kgrag(home, "db", "status", "--json").stdout)["running"] is False


def test_data_survives_restart(home):
    from kgrag.config import load_settings
    from kgrag.graph.factory import open_store

    s = load_settings(home)
    store = open_store(s)
    store.upsert_concepts([{"id": "c1", "role": "Finding"}])
    store.close()
    kgrag(home, "db", "stop")
    store = open_store(s)  # starts on demand, replays the AOF
    assert [c["id"] for c in store.concepts()] == ["c1"]
    store.close()


def test_concurrent_starts_share_one_server(home):
    procs = [subprocess.Popen([sys.executable, "-m", "kgrag", "db", "start", "--json"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "KGRAG_HOME": str(home)})
             for _ in range(3)]
    pids = set()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        pids.add(json.loads(out)["pid"])
    assert len(pids) == 1

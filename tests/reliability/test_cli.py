"""Command-line contracts: early option checks, honest doctor, redacted URIs, quiet drivers.

Defects covered: 4 (doctor warns about homes others can read), 10 (a password inside a
Neo4j URI was printed), 11 (query options checked late or not at all), 12 (doctor said
ok while the index was stale), 14c (a neo4j.pool ERROR line without -v), 14d (kg import
lacked --json)."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from tests.reliability.helpers import assert_clean_failure, clone_home, env_for, kgrag

SENTINEL = "Pw-SENTINEL-7f3a"


def _checks(r) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(r.stdout)["checks"]}


# -- 11 ---------------------------------------------------------------------------------
@pytest.mark.parametrize("opt, value, needle", [
    ("--k", "0", "x>=1"), ("--k", "-1", "x>=1"), ("--n", "0", "x>=1"),
    ("--alpha", "2", "0<=x<=1"), ("--alpha", "-0.1", "0<=x<=1"),
])
def test_d11_query_options_are_checked_before_anything_runs(tmp_path, opt, value, needle):
    home = tmp_path / "home"
    t0 = time.perf_counter()
    r = kgrag(home, "query", "--findings", "Small effusion.", opt, value)
    elapsed = time.perf_counter() - t0
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert opt in r.stderr and needle in r.stderr.replace(" ", ""), r.stderr
    assert not home.exists(), "the query loaded something before checking its options"
    assert elapsed < 30, elapsed  # the full query took ~9 s before failing


# -- 12 ---------------------------------------------------------------------------------
def test_d12_doctor_fails_on_an_index_the_graph_has_left_behind(trained, tmp_path):
    s, _ = trained
    home = clone_home(s.home, tmp_path / "home")
    try:
        c = _checks(kgrag(home, "doctor", "--json"))
        assert c["indexes:current"]["status"] == "ok", c["indexes:current"]
        edges = json.loads(kgrag(home, "kg", "show", "--json", "--status", "accepted", check=True).stdout)["edges"]
        e = edges[0]
        kgrag(home, "curate", "set", e["src"], e["dst"], "--status", "rejected", "--by", "ana", check=True)
        r = kgrag(home, "doctor", "--json")
        c = _checks(r)
        assert r.returncode == 1 and c["indexes:current"]["status"] == "fail"
        assert "stale" in c["indexes:current"]["detail"] and "kgrag index build" in c["indexes:current"]["fix"]
        # doctor and query agree
        assert_clean_failure(kgrag(home, "query", "--findings", "Cardiomegaly."), "graph version", "index build")
    finally:
        kgrag(home, "db", "stop")


# -- 4 ----------------------------------------------------------------------------------
def test_d04_doctor_warns_when_others_can_read_the_home(tmp_path):
    home = tmp_path / "home"
    kgrag(home, "doctor", "--json", "--no-start")
    assert _checks(kgrag(home, "doctor", "--json", "--no-start"))["home:permissions"]["status"] == "ok"
    os.chmod(home, 0o755)
    c = _checks(kgrag(home, "doctor", "--json", "--no-start"))["home:permissions"]
    assert c["status"] == "warn" and "0755" in c["detail"] and c["fix"] == f"chmod -R go-rwx {home}"


# -- 10, 14c ------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["neo4j", "bolt"])
def test_d10_a_password_inside_a_neo4j_uri_is_never_shown(tmp_path, scheme):
    pytest.importorskip("neo4j")
    uri = f"{scheme}://kim:{SENTINEL}@127.0.0.1:1"
    env = env_for(tmp_path / "home", KGRAG_GRAPH__BACKEND="neo4j", KGRAG_NEO4J__URI=uri,
                  KGRAG_NEO4J__CONNECT_TIMEOUT_S="2", KGRAG_NEO4J__MAX_RETRY_TIME_S="1")
    runs = {
        "kg show": kgrag(tmp_path / "home", "kg", "show", env=env),
        "doctor": kgrag(tmp_path / "home", "doctor", "--json", env=env),
        "db status": kgrag(tmp_path / "home", "db", "status", "--json", env=env),
        "kg show -vv": kgrag(tmp_path / "home", "-vv", "kg", "show", env=env),
    }
    for name, r in runs.items():
        assert SENTINEL not in r.stdout + r.stderr, f"{name} printed the password:\n{r.stdout}\n{r.stderr}"
    assert_clean_failure(runs["kg show"], f"{scheme}://***@127.0.0.1:1")
    assert json.loads(runs["db status"].stdout)["uri"] == f"{scheme}://***@127.0.0.1:1"
    graph = _checks(runs["doctor"])["graph"]
    assert graph["status"] == "fail" and "***@127.0.0.1:1" in graph["detail"]


def test_d14c_the_driver_logs_nothing_without_v(tmp_path):
    pytest.importorskip("neo4j")
    env = env_for(tmp_path / "home", KGRAG_GRAPH__BACKEND="neo4j", KGRAG_NEO4J__URI="neo4j://127.0.0.1:1",
                  KGRAG_NEO4J__CONNECT_TIMEOUT_S="2", KGRAG_NEO4J__MAX_RETRY_TIME_S="1")
    r = kgrag(tmp_path / "home", "kg", "show", env=env)
    assert_clean_failure(r, "cannot reach Neo4j")
    assert "neo4j.pool" not in r.stderr and " ERROR " not in r.stderr, r.stderr
    assert re.match(r"error E\d{3}: ", [ln for ln in r.stderr.splitlines() if ln.strip()][0])
    # the routing driver does log it at ERROR: it shows with -v
    assert "ERROR neo4j.pool" in kgrag(tmp_path / "home", "-v", "kg", "show", env=env).stderr


# -- 14d --------------------------------------------------------------------------------
def test_d14d_kg_import_speaks_json(tmp_path):
    home = tmp_path / "home"
    export = tmp_path / "g.json"
    export.write_text(json.dumps({"format": "kgrag.graph.v1",
                                  "concepts": [{"id": "a", "role": "Finding"}, {"id": "b", "role": "Diagnosis"}],
                                  "edges": [{"src": "a", "dst": "b", "p": 0.4, "status": "accepted"}]}))
    try:
        res = json.loads(kgrag(home, "kg", "import", str(export), "--json", check=True).stdout)
        assert res["concepts"] == 2 and res["edges"] == 1 and res["graph_version"].startswith("g-")
        bad = tmp_path / "bad.json"
        bad.write_bytes(b"\xff\xfe not json")
        assert_clean_failure(kgrag(home, "kg", "import", str(bad), "--json"), "not a UTF-8 JSON graph export")
    finally:
        kgrag(home, "db", "stop")

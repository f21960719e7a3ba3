"""Build, curate and audit the causal graph on a small synthetic corpus (embedded FalkorDB)."""

import csv
import json

import pytest

from kgrag.errors import InputError
from kgrag.graph.factory import open_store
from kgrag.kg.audit import audit_graph, run_audit
from kgrag.kg.build import build_graph
from kgrag.kg.curate import export_csv, import_csv


@pytest.fixture(scope="module")
def built(synth_graph_home):
    s, corpus, rep = synth_graph_home(1200, 3)
    return s, rep, corpus.parent


def test_build_recovers_true_edges(built):
    s, rep, tmp = built
    truth = json.loads((tmp / "c" / "truth.json").read_text())
    reader = {(e["src"], e["dst"]) for e in truth["reader_edges"]}
    store = open_store(s)
    acc = {(e["src"], e["dst"]) for e in store.edges("accepted")}
    assert rep.n_accepted == len(acc) > 5
    precision = len(acc & reader) / len(acc)
    assert precision >= 0.7, (precision, acc - reader)
    assert ("consolidation", "pneumonia") in acc
    assert rep.graph_version == store.version()
    e = {(x["src"], x["dst"]): x for x in store.edges()}[("consolidation", "pneumonia")]
    assert e["evidence_count"] >= len(e["evidence_studies"]) > 0 and e["p_value"] is not None
    assert all(":" in sp for sp in e["evidence_spans"])
    store.close()


def test_locked_edge_survives_rebuild_and_drift_is_reported(built):
    s, _, _ = built
    store = open_store(s)
    victim = sorted(store.edges("accepted"), key=lambda x: x["p"])[0]
    store.set_status(victim["src"], victim["dst"], "rejected", reviewed_by="kim", note="not causal")
    store.close()
    rep = build_graph(s)
    store = open_store(s)
    e = {(x["src"], x["dst"]): x for x in store.edges()}[(victim["src"], victim["dst"])]
    assert e["status"] == "rejected" and e["locked"] and e["reviewed_by"] == "kim"
    assert rep.n_locked_kept >= 1
    assert f"{victim['src']}->{victim['dst']}" not in rep.changes["added"]
    store.close()


def test_csv_roundtrip_and_malformed_rows(built, tmp_path):
    s, _, _ = built
    store = open_store(s)
    path = tmp_path / "edges.csv"
    n = export_csv(store, path)
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == n
    assert import_csv(store, path)["applied"] == 0  # unchanged file applies nothing
    good = dict(rows[0], status="accepted", reviewed_by="ana", note="reviewed")
    bad_rows = [
        dict(rows[1], status="maybe"),
        dict(rows[2], src="no_such_concept"),
        dict(rows[3], p="high"),
        dict(rows[4], locked="perhaps"),
    ]
    bad = tmp_path / "bad.csv"
    with open(bad, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in [good] + bad_rows:
            w.writerow(r)
    before = store.export()
    with pytest.raises(InputError) as ei:
        import_csv(store, bad)
    msg = str(ei.value)
    for k in ("row 3", "row 4", "row 5", "row 6"):
        assert k in msg
    assert store.export() == before  # nothing half-applied
    missing = tmp_path / "missing.csv"
    missing.write_text("src,dst\na,b\n")
    with pytest.raises(InputError, match="missing column"):
        import_csv(store, missing)
    ok = tmp_path / "ok.csv"
    with open(ok, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerow(good)
    assert import_csv(store, ok)["applied"] == 1
    e = {(x["src"], x["dst"]): x for x in store.edges()}[(good["src"], good["dst"])]
    assert e["status"] == "accepted" and e["reviewed_by"] == "ana" and e["locked"]
    store.close()


def test_audit_clean_graph_has_no_errors(built, tmp_path):
    s, _, _ = built
    rep = run_audit(s, html_path=str(tmp_path / "a.html"))
    assert rep["summary"]["errors"] == 0
    html = (tmp_path / "a.html").read_text()
    assert "<img src='data:image/png;base64," in html and rep["graph_version"] in html


def test_audit_finds_each_planted_defect():
    concepts = [{"id": "a", "role": "ImageFinding", "definition": "x"}, {"id": "b", "role": "Finding", "definition": "x"},
                {"id": "c", "role": "Finding", "definition": ""}, {"id": "d", "role": "Diagnosis", "definition": "x"},
                {"id": "z", "role": "Diagnosis", "definition": "x"}, {"id": "o", "role": "Finding", "definition": "x"}]

    def e(s, d, **kw):
        return {"src": s, "dst": d, "p": 0.5, "status": "accepted", "support": 50, "p_value": 0.001,
                "evidence_studies": ["t1"], "source": "statistics", **kw}

    edges = [e("a", "b"), e("b", "c"), e("c", "b"),  # cycle + contradiction
             e("c", "d", support=2),  # low support
             e("a", "c", p_value=0.3),  # high p-value
             e("b", "d", evidence_studies=["leak"]),  # leakage
             e("a", "d", evidence_studies=["gone"], status="proposed")]  # missing provenance
    splits = {"t1": "train", "leak": "test"}
    builds = [{"edges": [{"src": "a", "dst": "b", "p": 0.9, "status": "accepted"}]}, {"edges": []}]
    found = {f["check"]: f for f in audit_graph(edges, concepts, splits, min_support=5, alpha=0.05, builds=builds)}
    assert found["cycles"]["severity"] == "error"
    assert found["leakage"]["severity"] == "error"
    for check in ("low_support", "high_p_value", "contradictions", "orphans", "unreachable",
                  "missing_provenance", "definitions", "drift"):
        assert check in found, check
    assert "o" in found["orphans"]["items"] and "z" in found["unreachable"]["items"]
    assert found["definitions"]["items"] == ["c"]


def test_cli_audit_exit_codes(built):
    import subprocess
    import sys

    s, _, _ = built
    env = {"KGRAG_HOME": str(s.home), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "kgrag", "audit", "--json"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["summary"]["errors"] == 0

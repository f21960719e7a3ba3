"""Curation import: one transaction, no silent last-wins, p edits applied, UTF-8 only.

Defects covered: 7 (rows applied one by one, so kill -9 left 96/127 applied; conflicting
duplicate rows accepted; p edits validated then dropped) and 9 (a non-UTF-8 CSV gave a
traceback).  The kill -9 cases of the import are in test_kill_matrix.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from kgrag.config import load_settings
from kgrag.errors import InputError
from kgrag.graph.factory import open_store
from kgrag.kg.curate import export_csv, import_csv
from tests.reliability.helpers import assert_clean_failure, clone_home, kgrag


@pytest.fixture
def home(trained, tmp_path):
    s, _ = trained
    return load_settings(clone_home(s.home, tmp_path / "home"))


def _sheet(store, path: Path) -> list[dict]:
    export_csv(store, path)
    return list(csv.DictReader(path.open(encoding="utf-8")))


def _save(path: Path, rows: list[dict], encoding: str = "utf-8") -> Path:
    with path.open("w", newline="", encoding=encoding) as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_d07_the_whole_file_is_one_statement(home, tmp_path):
    store = open_store(home)
    rows = _sheet(store, tmp_path / "e.csv")
    assert len(rows) >= 10
    edited = [{**r, "status": "rejected", "reviewed_by": "ana", "note": f"n{i}"} for i, r in enumerate(rows)]
    sent = []
    real = store._execute

    def spy(name, text, params):
        sent.append((name, len(params.get("rows") or [])))
        return real(name, text, params)

    store._execute = spy
    res = import_csv(store, _save(tmp_path / "r.csv", edited))
    writes = [x for x in sent if "set_edge" in x[0]]
    assert writes == [("set_edge_reviews.cypher", len(rows))], writes
    assert res["applied"] == len(rows)
    assert {e["status"] for e in store.edges()} == {"rejected"}
    store.close()


def test_d07_a_vanished_edge_applies_nothing(home):
    store = open_store(home)
    edges = store.edges()
    rows = [{"src": e["src"], "dst": e["dst"], "status": "rejected", "reviewed_by": "ana", "locked": True,
             "note": None, "reviewed_at": "2026-01-01T00:00:00+00:00", "p": None} for e in edges[:5]]
    rows.append({**rows[0], "dst": edges[0]["src"]})  # a self-loop: never an edge
    before = store.export()
    assert store.apply_reviews(rows) == 0
    assert store.export() == before
    store.close()


def test_d07_conflicting_duplicate_rows_are_refused(home, tmp_path):
    store = open_store(home)
    rows = _sheet(store, tmp_path / "e.csv")
    a = {**rows[0], "status": "accepted", "reviewed_by": "ana"}
    b = {**rows[0], "status": "rejected", "reviewed_by": "bo"}
    before = store.export()
    with pytest.raises(InputError) as ei:
        import_csv(store, _save(tmp_path / "dup.csv", [a, rows[1], b]))
    msg = str(ei.value)
    assert "row 4" in msg and "also on row 2" in msg and "status" in msg and "reviewed_by" in msg
    assert store.export() == before
    res = import_csv(store, _save(tmp_path / "same.csv", [a, rows[1], a]))  # an identical repeat counts once
    assert (res["applied"], res["duplicates"]) == (1, 1)
    store.close()


def test_d07_p_edits_are_applied_and_kept_by_rebuilds(home, tmp_path):
    from kgrag.kg.build import build_graph

    store = open_store(home)
    rows = _sheet(store, tmp_path / "e.csv")
    target = next(r for r in rows if r["status"] == "accepted")
    v0 = store.version()
    edited = [{**target, "p": "0.123", "reviewed_by": "ana"}] + [r for r in rows if r is not target]
    res = import_csv(store, _save(tmp_path / "p.csv", edited))
    assert (res["applied"], res["p_edits"]) == (1, 1)
    e = {(x["src"], x["dst"]): x for x in store.edges()}[(target["src"], target["dst"])]
    assert (e["p"], e["source"], e["locked"], e["reviewed_by"]) == (0.123, "human", True, "ana")
    assert store.version() != v0
    store.close()
    build_graph(home)  # statistics are refreshed; the reviewer's p stays
    store = open_store(home)
    e = {(x["src"], x["dst"]): x for x in store.edges()}[(target["src"], target["dst"])]
    assert (e["p"], e["source"]) == (0.123, "human")
    # an unchanged p (as exported) is not an edit
    assert import_csv(store, _save(tmp_path / "same.csv", _sheet(store, tmp_path / "e2.csv")))["applied"] == 0
    store.close()


def test_d09_a_non_utf8_sheet_is_a_message_with_a_fix(home, tmp_path):
    store = open_store(home)
    rows = _sheet(store, tmp_path / "e.csv")
    store.close()
    latin = _save(tmp_path / "latin1.csv", [{**rows[0], "status": "rejected", "reviewed_by": "Zoë", "note": "café"}],
                  encoding="latin-1")
    r = kgrag(home.home, "curate", "import", str(latin))
    assert_clean_failure(r, "not UTF-8", "CSV UTF-8")
    # a byte-order mark, as spreadsheets write it, is fine
    bom = _save(tmp_path / "bom.csv", [{**rows[0], "status": "rejected", "reviewed_by": "Zoë", "note": "café"}],
                encoding="utf-8-sig")
    res = json.loads(kgrag(home.home, "curate", "import", str(bom), "--json", check=True).stdout)
    assert res["applied"] == 1
    kgrag(home.home, "db", "stop")

"""Curation by CSV: export the edges, review them in a spreadsheet, import the decisions.

Import validates every row before touching the graph: if any row is bad, the
errors (row number, what is wrong, the fix) are raised together and nothing from
that file is applied.  A row whose status or note changed is a human decision
and is locked (no rebuild overwrites it); ``kgrag curate set --unlock`` records
a review without a lock.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from kgrag.errors import InputError
from kgrag.graph.store import GraphStore
from kgrag.types import EDGE_STATUSES

COLUMNS = ["src", "dst", "status", "p", "support", "p_value", "source", "reviewed_by", "reviewed_at", "note", "locked",
           "evidence_count", "rationale"]
REQUIRED = ["src", "dst", "status"]
_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n", ""}


def export_csv(store: GraphStore, path: str | Path, status: str | None = None) -> int:
    edges = sorted(store.edges(status), key=lambda e: (e["status"] != "proposed", -(e["p"] or 0)))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for e in edges:
            w.writerow({k: ("" if e.get(k) is None else e.get(k)) for k in COLUMNS})
    return len(edges)


def validate_rows(rows: list[dict[str, str]], existing: dict[tuple[str, str], dict], default_reviewer: str | None) -> tuple[list[dict], list[str]]:
    errors, ok = [], []
    for i, row in enumerate(rows, 2):  # row 1 is the header
        src, dst = (row.get("src") or "").strip(), (row.get("dst") or "").strip()
        status = (row.get("status") or "").strip()
        if (src, dst) not in existing:
            errors.append(f"row {i}: no edge {src!r} -> {dst!r} in the graph (fix: export again; curation edits existing edges)")
            continue
        if status not in EDGE_STATUSES:
            errors.append(f"row {i}: status {status!r} is not one of {EDGE_STATUSES} (fix: use proposed, accepted or rejected)")
            continue
        p = (row.get("p") or "").strip()
        if p:
            try:
                pv = float(p)
                if not 0.0 <= pv <= 1.0:
                    raise ValueError
            except ValueError:
                errors.append(f"row {i}: p={p!r} is not a number in [0, 1] (fix: leave the exported value)")
                continue
        locked = (row.get("locked") or "").strip().lower()
        if locked not in _TRUE | _FALSE:
            errors.append(f"row {i}: locked={locked!r} is not true/false (fix: write true or false)")
            continue
        reviewer = (row.get("reviewed_by") or "").strip() or default_reviewer
        cur = existing[(src, dst)]
        note = (row.get("note") or "").strip() or None
        changed = status != cur["status"] or note != (cur.get("note") or None) or (locked in _TRUE) != bool(cur.get("locked"))
        if changed and not reviewer:
            errors.append(f"row {i}: a changed edge needs reviewed_by (fix: fill it in, or pass --by NAME)")
            continue
        ok.append({"src": src, "dst": dst, "status": status, "note": note, "reviewed_by": reviewer,
                   "locked": changed or locked in _TRUE, "changed": changed})
    return ok, errors


def import_csv(store: GraphStore, path: str | Path, default_reviewer: str | None = None) -> dict[str, Any]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise InputError(f"{path}: missing column(s) {missing}", fix="start from 'kgrag curate export FILE.csv'")
        rows = list(reader)
    existing = {(e["src"], e["dst"]): e for e in store.edges()}
    ok, errors = validate_rows(rows, existing, default_reviewer)
    if errors:
        raise InputError(f"{path}: {len(errors)} bad row(s); nothing was applied:\n  " + "\n  ".join(errors[:50]),
                         fix="correct the rows listed and import again")
    applied = 0
    for r in ok:
        if r["changed"]:
            store.set_status(r["src"], r["dst"], r["status"], reviewed_by=r["reviewed_by"], note=r["note"], locked=r["locked"])
            applied += 1
    return {"applied": applied, "unchanged": len(ok) - applied, "rows": len(ok)}

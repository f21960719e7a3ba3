"""Curation by CSV: export the edges, review them in a spreadsheet, import the decisions.

Import validates every row before touching the graph: if any row is bad, the
errors (row number, what is wrong, the fix) are raised together and nothing from
that file is applied.  The valid file is then applied in ONE statement
(``set_edge_reviews.cypher``), so one transaction: a crash or a kill leaves
either every row applied or none.

- A row whose status, note, lock or ``p`` changed is a human decision and is
  locked (no rebuild overwrites it); ``kgrag curate set --unlock`` records a
  review without a lock.
- An edited ``p`` is applied: it becomes the edge's strength, its source becomes
  ``human``, and rebuilds keep it (they refresh only the statistics).
- The same edge on two rows is refused when the rows disagree (which one did the
  reviewer mean?); identical repeated rows count once.
- The file must be UTF-8 (a byte-order mark, as spreadsheets write, is fine).
"""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime
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
#: a p that differs from the exported value by less than this is the exported value
P_TOLERANCE = 1e-9


def export_csv(store: GraphStore, path: str | Path, status: str | None = None) -> int:
    from kgrag.paths import private_open

    edges = sorted(store.edges(status), key=lambda e: (e["status"] != "proposed", -(e["p"] or 0)))
    with private_open(path, "w") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for e in edges:
            w.writerow({k: ("" if e.get(k) is None else e.get(k)) for k in COLUMNS})
    return len(edges)


def validate_rows(rows: list[dict[str, str]], existing: dict[tuple[str, str], dict],
                  default_reviewer: str | None) -> tuple[list[dict], list[str]]:
    """Rows → (decisions, errors).  A decision is ``{src, dst, status, note, reviewed_by,
    reviewed_at, locked, p, changed, row}``; ``p`` is None unless the reviewer changed it."""
    errors: list[str] = []
    ok: list[dict] = []
    first: dict[tuple[str, str], dict] = {}
    for i, row in enumerate(rows, 2):  # row 1 is the header
        src, dst = (row.get("src") or "").strip(), (row.get("dst") or "").strip()
        status = (row.get("status") or "").strip()
        if (src, dst) not in existing:
            errors.append(f"row {i}: no edge {src!r} -> {dst!r} in the graph (fix: export again; curation edits existing edges)")
            continue
        if status not in EDGE_STATUSES:
            errors.append(f"row {i}: status {status!r} is not one of {EDGE_STATUSES} (fix: use proposed, accepted or rejected)")
            continue
        cur = existing[(src, dst)]
        p_text = (row.get("p") or "").strip()
        p_new: float | None = None
        if p_text:
            try:
                pv = float(p_text)
                if not (math.isfinite(pv) and 0.0 <= pv <= 1.0):
                    raise ValueError
            except ValueError:
                errors.append(f"row {i}: p={p_text!r} is not a number in [0, 1] (fix: leave the exported value or write one in [0, 1])")
                continue
            if cur.get("p") is None or abs(pv - float(cur["p"])) > P_TOLERANCE:
                p_new = pv
        locked = (row.get("locked") or "").strip().lower()
        if locked not in _TRUE | _FALSE:
            errors.append(f"row {i}: locked={locked!r} is not true/false (fix: write true or false)")
            continue
        reviewer = (row.get("reviewed_by") or "").strip() or default_reviewer
        note = (row.get("note") or "").strip() or None
        changed = (status != cur["status"] or note != (cur.get("note") or None)
                   or (locked in _TRUE) != bool(cur.get("locked")) or p_new is not None)
        if changed and not reviewer:
            errors.append(f"row {i}: a changed edge needs reviewed_by (fix: fill it in, or pass --by NAME)")
            continue
        decision = {"src": src, "dst": dst, "status": status, "note": note, "reviewed_by": reviewer,
                    "reviewed_at": (row.get("reviewed_at") or "").strip() or None,
                    "locked": changed or locked in _TRUE, "p": p_new, "changed": changed, "row": i}
        key = (src, dst)
        if key in first:
            a = {k: v for k, v in first[key].items() if k != "row"}
            b = {k: v for k, v in decision.items() if k != "row"}
            if a != b:
                diff = sorted(k for k in a if a[k] != b[k])
                errors.append(f"row {i}: edge {src!r} -> {dst!r} is also on row {first[key]['row']} with a different "
                              f"{', '.join(diff)} (fix: keep one row per edge)")
            continue  # an identical repeat counts once
        first[key] = decision
        ok.append(decision)
    return ok, errors


def _read_rows(path: str | Path) -> list[dict[str, str]]:
    p = Path(path)
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(f"{p} is not UTF-8 text (byte 0x{raw[e.start]:02x} on line {line})",
                         fix="save the sheet as 'CSV UTF-8' (or convert it: iconv -f latin1 -t utf-8)") from e
    if "\x00" in text:
        raise InputError(f"{p} contains NUL bytes; it is not a CSV text file", fix="export the sheet as CSV UTF-8")
    reader = csv.DictReader(io.StringIO(text, newline=""))  # quoted fields may hold newlines
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(f"{p}: missing column(s) {missing}", fix="start from 'kgrag curate export FILE.csv'")
    try:
        return list(reader)
    except csv.Error as e:
        raise InputError(f"{p}: malformed CSV: {e}", fix="start from 'kgrag curate export FILE.csv'") from e


def import_csv(store: GraphStore, path: str | Path, default_reviewer: str | None = None) -> dict[str, Any]:
    rows = _read_rows(path)
    existing = {(e["src"], e["dst"]): e for e in store.edges()}
    ok, errors = validate_rows(rows, existing, default_reviewer)
    if errors:
        raise InputError(f"{path}: {len(errors)} bad row(s); nothing was applied:\n  " + "\n  ".join(errors[:50]),
                         fix="correct the rows listed and import again")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    changes = [{**{k: r[k] for k in ("src", "dst", "status", "note", "reviewed_by", "locked", "p")},
                "reviewed_at": r["reviewed_at"] or now} for r in ok if r["changed"]]
    applied = store.apply_reviews(changes) if changes else 0
    if applied != len(changes):
        raise InputError(f"{path}: {applied} of {len(changes)} edges were found while applying the file "
                         "(the graph changed since it was read)",
                         fix="export again, redo the review on the new file and import it")
    return {"applied": applied, "unchanged": len(ok) - len(changes), "rows": len(ok),
            "p_edits": sum(1 for r in changes if r["p"] is not None), "duplicates": len(rows) - len(ok)}

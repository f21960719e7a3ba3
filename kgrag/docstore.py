"""The docstore: SQLite (WAL) under ``$KGRAG_HOME`` holding studies, sections,
mentions, images and ingest runs.  Study ids are the manifest ids."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from kgrag.paths import FILE_MODE, is_storage_error, private_dir, storage_error, writing
from kgrag.types import Mention, Section, Study

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS studies (
    id TEXT PRIMARY KEY, split TEXT, modality TEXT, report TEXT NOT NULL,
    findings TEXT, impression TEXT, labels TEXT, questions TEXT, meta TEXT,
    content_hash TEXT NOT NULL, graph_synced INTEGER NOT NULL DEFAULT 0,
    run_id INTEGER, updated_at TEXT DEFAULT (datetime('now'))
);
CREATE INDEX IF NOT EXISTS studies_split ON studies(split);
CREATE TABLE IF NOT EXISTS sections (
    study_id TEXT NOT NULL, idx INTEGER NOT NULL, name TEXT, start INTEGER, end INTEGER, text TEXT,
    PRIMARY KEY (study_id, idx)
);
CREATE TABLE IF NOT EXISTS mentions (
    study_id TEXT NOT NULL, idx INTEGER NOT NULL, concept TEXT, role TEXT, assertion TEXT, section TEXT,
    sentence TEXT, start INTEGER, end INTEGER, text TEXT, extractor TEXT, extractor_version TEXT,
    PRIMARY KEY (study_id, idx)
);
CREATE INDEX IF NOT EXISTS mentions_concept ON mentions(concept);
CREATE TABLE IF NOT EXISTS images (
    study_id TEXT NOT NULL, idx INTEGER NOT NULL, path TEXT, status TEXT, error TEXT, width INTEGER, height INTEGER,
    PRIMARY KEY (study_id, idx)
);
CREATE TABLE IF NOT EXISTS ingest_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT, started_at TEXT DEFAULT (datetime('now')),
    finished_at TEXT, n_read INTEGER, n_written INTEGER, n_unchanged INTEGER, n_failed INTEGER, report_path TEXT
);
"""
_RANK = {"present": 2, "uncertain": 1, "absent": 0}


class DocStore:
    """Reports are health data: the file is created 0600 (SQLite gives its -wal and -shm
    files the same mode).  A full disk or a read-only home raises
    :class:`~kgrag.errors.StorageError` naming the path and the fix."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        private_dir(self.path.parent)
        with writing(self.path, "open the docstore"):
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
            except FileExistsError:
                pass
            self.conn = sqlite3.connect(str(self.path), timeout=60, isolation_level=None, check_same_thread=False)
            try:
                self.conn.row_factory = sqlite3.Row
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.execute("PRAGMA foreign_keys=ON")
                self.conn.executescript(_SCHEMA)
                self.conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                                  (str(SCHEMA_VERSION),))
            except BaseException:
                self.conn.close()
                raise

    @classmethod
    def from_settings(cls, settings: Any) -> DocStore:
        return cls(settings.docstore_path)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> DocStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writes ----------------------------------------------------------------------
    def hashes(self) -> dict[str, tuple[str, int]]:
        return {r[0]: (r[1], r[2]) for r in self.conn.execute("SELECT id, content_hash, graph_synced FROM studies")}

    def write_batch(self, records: Iterable[dict[str, Any]], run_id: int | None = None) -> int:
        """Replace whole studies (row, sections, mentions, images) in one transaction."""
        recs = list(records)
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for r in recs:
                sid = r["id"]
                for t in ("sections", "mentions", "images"):
                    cur.execute(f"DELETE FROM {t} WHERE study_id = ?", (sid,))  # noqa: S608 - fixed table names
                cur.execute(
                    "INSERT OR REPLACE INTO studies(id, split, modality, report, findings, impression, labels, questions,"
                    " meta, content_hash, graph_synced, run_id, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,0,?,datetime('now'))",
                    (sid, r["split"], r["modality"], r["report"], r.get("findings"), r.get("impression"),
                     json.dumps(r.get("labels") or {}), json.dumps(r.get("questions") or []),
                     json.dumps(r.get("meta") or {}), r["content_hash"], run_id),
                )
                cur.executemany(
                    "INSERT INTO sections VALUES (?,?,?,?,?,?)",
                    [(sid, i, s.name, s.start, s.end, s.text) for i, s in enumerate(r["sections"])],
                )
                cur.executemany(
                    "INSERT INTO mentions VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    [(sid, i, m.concept, m.role, m.assertion, m.section, m.sentence, m.start, m.end, m.text,
                      m.extractor, m.extractor_version) for i, m in enumerate(r["mentions"])],
                )
                cur.executemany(
                    "INSERT INTO images VALUES (?,?,?,?,?,?,?)",
                    [(sid, i, im["path"], im["status"], im.get("error"), im.get("width"), im.get("height"))
                     for i, im in enumerate(r["images"])],
                )
            cur.execute("COMMIT")
        except BaseException as e:
            # SQLite rolls back by itself after SQLITE_FULL and some I/O errors; a second
            # ROLLBACK would hide the cause behind "no transaction is active"
            if self.conn.in_transaction:
                cur.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error) and is_storage_error(e):
                raise storage_error(e, self.path, "write the docstore") from e
            raise
        return len(recs)

    def _write(self, sql: str, args: Any, many: bool = False) -> sqlite3.Cursor:
        with writing(self.path, "write the docstore"):
            return self.conn.executemany(sql, args) if many else self.conn.execute(sql, args)

    def mark_synced(self, ids: Iterable[str]) -> None:
        self._write("UPDATE studies SET graph_synced = 1 WHERE id = ?", [(i,) for i in ids], many=True)

    def mark_unsynced(self, ids: Iterable[str]) -> None:
        """Studies the graph does not hold as the docstore does: the next ingest re-sends them."""
        self._write("UPDATE studies SET graph_synced = 0 WHERE id = ?", [(i,) for i in ids], many=True)

    def start_run(self, source: str) -> int:
        return int(self._write("INSERT INTO ingest_runs(source) VALUES (?)", (source,)).lastrowid)

    def finish_run(self, run_id: int, **counts: Any) -> None:
        self._write(
            "UPDATE ingest_runs SET finished_at = datetime('now'), n_read = ?, n_written = ?, n_unchanged = ?,"
            " n_failed = ?, report_path = ? WHERE id = ?",
            (counts.get("n_read"), counts.get("n_written"), counts.get("n_unchanged"), counts.get("n_failed"),
             counts.get("report_path"), run_id),
        )

    # -- reads -------------------------------------------------------------------------
    def _study(self, row: sqlite3.Row) -> Study:
        imgs = [r[0] for r in self.conn.execute(
            "SELECT path FROM images WHERE study_id = ? AND status = 'ok' ORDER BY idx", (row["id"],))]
        return Study(id=row["id"], split=row["split"], modality=row["modality"], report=row["report"],
                     findings=row["findings"], impression=row["impression"], images=imgs,
                     labels=json.loads(row["labels"] or "{}"), questions=json.loads(row["questions"] or "[]"),
                     content_hash=row["content_hash"], meta=json.loads(row["meta"] or "{}"))

    def studies(self, split: str | None = None, modality: str | None = None) -> Iterator[Study]:
        q, args = "SELECT * FROM studies WHERE 1=1", []
        if split is not None:
            q += " AND split = ?"
            args.append(split)
        if modality is not None:
            q += " AND modality = ?"
            args.append(modality)
        for row in self.conn.execute(q + " ORDER BY id", args).fetchall():
            yield self._study(row)

    def get_study(self, study_id: str) -> Study | None:
        row = self.conn.execute("SELECT * FROM studies WHERE id = ?", (study_id,)).fetchone()
        return self._study(row) if row else None

    def study_ids(self, split: str | None = None) -> list[str]:
        if split is None:
            return [r[0] for r in self.conn.execute("SELECT id FROM studies ORDER BY id")]
        return [r[0] for r in self.conn.execute("SELECT id FROM studies WHERE split = ? ORDER BY id", (split,))]

    def splits(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT id, split FROM studies")}

    def sections(self, study_id: str) -> list[Section]:
        return [Section(study_id, r["name"], r["text"], r["start"], r["end"]) for r in self.conn.execute(
            "SELECT * FROM sections WHERE study_id = ? ORDER BY idx", (study_id,))]

    def mentions(self, study_id: str | None = None, split: str | None = None) -> Iterator[Mention]:
        q = "SELECT m.* FROM mentions m JOIN studies s ON s.id = m.study_id WHERE 1=1"
        args: list[Any] = []
        if study_id is not None:
            q += " AND m.study_id = ?"
            args.append(study_id)
        if split is not None:
            q += " AND s.split = ?"
            args.append(split)
        for r in self.conn.execute(q + " ORDER BY m.study_id, m.idx", args):
            yield Mention(r["study_id"], r["concept"], r["role"], r["assertion"], r["section"], r["sentence"],
                          r["start"], r["end"], r["text"], r["extractor"], r["extractor_version"])

    def study_concepts(self, split: str | None = None) -> dict[str, dict[str, str]]:
        """study -> {concept: assertion}, one per concept: present > uncertain > absent.
        Every study of the split appears, also those with no mention."""
        out: dict[str, dict[str, str]] = {sid: {} for sid in self.study_ids(split)}
        for m in self.mentions(split=split):
            cur = out.setdefault(m.study_id, {})
            if m.concept not in cur or _RANK[m.assertion] > _RANK[cur[m.concept]]:
                cur[m.concept] = m.assertion
        return out

    def image_errors(self, study_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Images recorded as unreadable or refused: ``{study_id, path, error}`` (all when None)."""
        rows = [dict(r) for r in self.conn.execute(
            "SELECT study_id, path, error FROM images WHERE status != 'ok' ORDER BY study_id, idx")]
        if study_ids is None:
            return rows
        want = set(study_ids)
        return [r for r in rows if r["study_id"] in want]

    def images(self, study_id: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM images WHERE study_id = ? ORDER BY idx", (study_id,))]

    def counts(self) -> dict[str, int]:
        out = {}
        for t in ("studies", "sections", "mentions", "images"):
            out[t] = int(self.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # noqa: S608
        out["unsynced"] = int(self.conn.execute("SELECT count(*) FROM studies WHERE graph_synced = 0").fetchone()[0])
        return out

    def dump(self) -> dict[str, list[tuple]]:
        """A canonical dump of the content tables (for equality checks)."""
        out = {}
        for t, cols in (("studies", "id, split, modality, report, findings, impression, labels, questions, meta, content_hash, graph_synced"),
                        ("sections", "*"), ("mentions", "*"), ("images", "*")):
            out[t] = [tuple(r) for r in self.conn.execute(f"SELECT {cols} FROM {t} ORDER BY 1, 2")]  # noqa: S608
        return out

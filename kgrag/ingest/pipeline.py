"""``kgrag ingest``: records → validated studies → sections, mentions, images →
docstore (one transaction per batch) → graph store.

Idempotent and resumable: a study whose content hash is unchanged and already
synced to the graph is skipped; the docstore marks each study ``graph_synced``
only after its graph write, so a run killed at any point and rerun converges to
the same docstore and graph as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kgrag.errors import InputError, RecordError
from kgrag.graph.store import GraphStore
from kgrag.ingest.readers import RawRecord, read
from kgrag.ingest.sections import compose, split_sections
from kgrag.types import SPLITS

log = logging.getLogger(__name__)

BATCH = 256


@dataclass
class IngestReport:
    source: str
    n_read: int = 0
    n_written: int = 0
    n_unchanged: int = 0
    n_failed: int = 0
    n_image_errors: int = 0
    n_mentions: int = 0
    seconds: float = 0.0
    report_path: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reports_per_s(self) -> float:
        return (self.n_written / self.seconds) if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["errors"] = d["errors"][:20]
        d["reports_per_s"] = round(self.reports_per_s, 1)
        return d


def _file_digest(p: Path) -> str:
    try:
        st = p.stat()
    except OSError:
        return "missing"
    h = hashlib.sha256()
    with open(p, "rb") as f:
        h.update(f.read())
    return f"{st.st_size}:{h.hexdigest()[:16]}"


def validate(rec: RawRecord, max_chars: int) -> dict[str, Any]:
    """A raw record → a normalized study dict, or RecordError naming the fix."""
    d = rec.data or {}
    sid = d.get("id")
    if sid is None or (isinstance(sid, str) and not sid.strip()):
        raise RecordError("missing 'id'", "give every record a unique, non-empty 'id'")
    if not isinstance(sid, str | int):
        raise RecordError(f"'id' must be a string, got {type(sid).__name__}", "use a string id")
    sid = str(sid).strip()
    for k in ("report", "findings", "impression"):
        if d.get(k) is not None and not isinstance(d[k], str):
            raise RecordError(f"'{k}' must be a string", f"make '{k}' a string")
    findings, impression = d.get("findings"), d.get("impression")
    if findings or impression:
        report = compose(findings, impression, {k: d[k] for k in ("indication", "comparison") if isinstance(d.get(k), str)})
    else:
        report = d.get("report") or ""
    if not report.strip():
        raise RecordError("empty report: no 'report', 'findings' or 'impression' text", "add the report text or drop the record")
    if len(report) > max_chars:
        raise RecordError(f"report has {len(report)} characters, over the limit of {max_chars}",
                          "split the record, or raise KGRAG_INGEST__MAX_REPORT_CHARS")
    split = d.get("split") or "train"
    if split not in SPLITS:
        raise RecordError(f"split {split!r} is not one of {SPLITS}", "use train, val or test")
    images = d.get("images") or []
    if not isinstance(images, list) or not all(isinstance(x, str) for x in images):
        raise RecordError("'images' must be a list of paths", "write images as a JSON list of strings")
    base = rec.base_dir or Path(".")
    paths = [str((base / p).resolve()) if not os.path.isabs(p) else p for p in images]
    labels = d.get("labels") or {}
    if not isinstance(labels, dict):
        raise RecordError("'labels' must be an object", "write labels as {concept: 0|1}")
    meta = dict(d.get("meta") or {})
    for k in ("site",):
        if k in d:
            meta[k] = d[k]
    study = {
        "id": sid, "split": split, "modality": d.get("modality") or "radiology", "report": report,
        "findings": findings, "impression": impression, "image_paths": paths,
        "labels": labels, "questions": d.get("questions") or [], "meta": meta,
    }
    hashed = {k: study[k] for k in ("id", "split", "modality", "report", "labels", "questions", "meta")}
    hashed["images"] = [(p, _file_digest(Path(p))) for p in paths]
    study["content_hash"] = hashlib.sha256(json.dumps(hashed, sort_keys=True, default=str).encode()).hexdigest()
    return study


def check_images(paths: list[str]) -> list[dict[str, Any]]:
    from kgrag.imaging import load_image

    out = []
    for p in paths:
        try:
            arr = load_image(p)
            out.append({"path": p, "status": "ok", "height": int(arr.shape[0]), "width": int(arr.shape[1])})
        except InputError as e:
            out.append({"path": p, "status": "error", "error": e.message})
    return out


# -- extraction workers -----------------------------------------------------------------
_EXTRACTOR = None


def _worker_init() -> None:
    global _EXTRACTOR
    from kgrag.ingest.extract import RuleExtractor

    _EXTRACTOR = RuleExtractor()
    _EXTRACTOR.warm_up()


def _process(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sections, mentions and image checks for a batch of validated studies."""
    global _EXTRACTOR
    if _EXTRACTOR is None:
        _worker_init()
    ms = _EXTRACTOR.extract_many([(s["id"], s["report"]) for s in batch])
    for s, m in zip(batch, ms, strict=True):
        s["sections"] = split_sections(s["id"], s["report"])
        s["mentions"] = m
        s["images"] = check_images(s["image_paths"])
    return batch


def _batches(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    buf: list[Any] = []
    for x in items:
        buf.append(x)
        if len(buf) >= n:
            yield buf
            buf = []
    if buf:
        yield buf


def _graph_rows(batch: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    from kgrag.ingest.extract import study_level

    studies = [{"id": s["id"], "split": s["split"], "modality": s["modality"], "content_hash": s["content_hash"]} for s in batch]
    mentions = []
    for s in batch:
        level = study_level(s["mentions"])
        counts: dict[str, int] = {}
        first: dict[str, Any] = {}
        for m in s["mentions"]:
            counts[m.concept] = counts.get(m.concept, 0) + 1
            if m.assertion == level[m.concept] and m.concept not in first:
                first[m.concept] = m
        for c, a in level.items():
            mentions.append({"study_id": s["id"], "concept": c, "assertion": a, "count": counts[c],
                             "section": first[c].section, "sentence": first[c].sentence})
    return studies, mentions


def sync_graph(store: GraphStore, batch: list[dict[str, Any]]) -> None:
    studies, mentions = _graph_rows(batch)
    ids = [s["id"] for s in batch]
    store.upsert_studies(studies)
    store.delete_mentions(ids)
    store.upsert_mentions(mentions)


def _resync_from_docstore(docstore: Any, store: GraphStore, ids: list[str]) -> None:
    """Studies unchanged in the docstore but not yet in the graph (an interrupted run)."""
    for chunk in _batches(ids, BATCH):
        batch = []
        for sid in chunk:
            st = docstore.get_study(sid)
            batch.append({"id": sid, "split": st.split, "modality": st.modality, "content_hash": st.content_hash,
                          "mentions": list(docstore.mentions(study_id=sid))})
        sync_graph(store, batch)
        docstore.mark_synced(chunk)


def ingest(settings: Any, source: str | Path, *, fmt: str | None = None, images_dir: str | Path | None = None,
           workers: int | None = None, strict: bool = False, progress: bool = True, report_path: str | Path | None = None,
           store: GraphStore | None = None, docstore: Any = None) -> IngestReport:
    from tqdm import tqdm

    from kgrag.docstore import DocStore
    from kgrag.ontology import concepts

    t0 = time.perf_counter()
    workers = workers or settings.ingest.workers
    global _EXTRACTOR
    if settings.extractor.kind == "openai":
        from kgrag.ingest.extract import make_extractor

        _EXTRACTOR = make_extractor(settings)
        workers = 1  # the server does the work; requests are cached per text
    elif _EXTRACTOR is not None and getattr(_EXTRACTOR, "name", "") != "rules":
        _EXTRACTOR = None
    rep = IngestReport(str(source))
    own_doc = docstore is None
    docstore = docstore or DocStore.from_settings(settings)
    own_store = store is None
    if store is None:
        from kgrag.graph.factory import open_store

        store = open_store(settings)
    run_id = docstore.start_run(str(source))
    report_path = Path(report_path) if report_path else settings.runs_dir / "ingest" / f"run-{run_id}-errors.jsonl"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    errf = open(report_path, "w", encoding="utf-8")

    def fail(ref: str, study_id: str | None, msg: str, fix: str, kind: str = "record") -> None:
        if kind == "record":
            rep.n_failed += 1
        e = {"record": ref, "id": study_id, "kind": kind, "error": msg, "fix": fix}
        rep.errors.append(e)
        errf.write(json.dumps(e) + "\n")

    try:
        store.upsert_concepts(concepts().values())
        known = docstore.hashes()
        seen: set[str] = set()
        todo: list[dict[str, Any]] = []
        unsynced: list[str] = []
        bar = tqdm(desc="ingest", unit="report", disable=not progress)
        for rec in read(source, fmt, images_dir):
            rep.n_read += 1
            bar.update(1)
            if rec.error:
                fail(rec.ref, None, rec.error, rec.fix or "fix the record")
                continue
            try:
                st = validate(rec, settings.ingest.max_report_chars)
            except RecordError as e:
                fail(rec.ref, (rec.data or {}).get("id"), e.message, e.fix)
                continue
            if st["id"] in seen:
                fail(rec.ref, st["id"], f"duplicate id {st['id']!r} (first occurrence kept)", "make ids unique")
                continue
            seen.add(st["id"])
            prev = known.get(st["id"])
            if prev and prev[0] == st["content_hash"]:
                rep.n_unchanged += 1
                if not prev[1]:
                    unsynced.append(st["id"])
                continue
            todo.append(st)
        bar.close()
        if unsynced:
            _resync_from_docstore(docstore, store, unsynced)
        bar = tqdm(total=len(todo), desc="extract", unit="report", disable=not progress)
        batches = list(_batches(todo, BATCH if workers <= 1 else max(16, min(BATCH, len(todo) // (workers * 4) or 16))))
        if workers > 1 and len(batches) > 1:
            import multiprocessing as mp

            ctx = mp.get_context("fork")
            with ctx.Pool(workers, initializer=_worker_init) as pool:
                for done in pool.imap(_process, batches):
                    _write(done, docstore, store, run_id, rep, fail)
                    bar.update(len(done))
        else:
            for b in batches:
                done = _process(b)
                _write(done, docstore, store, run_id, rep, fail)
                bar.update(len(done))
        bar.close()
    finally:
        errf.close()
        rep.seconds = time.perf_counter() - t0
        rep.report_path = str(report_path)
        docstore.finish_run(run_id, n_read=rep.n_read, n_written=rep.n_written, n_unchanged=rep.n_unchanged,
                            n_failed=rep.n_failed, report_path=str(report_path))
        if own_doc:
            docstore.close()
        if own_store:
            store.close()
    if strict and rep.n_failed:
        raise InputError(f"{rep.n_failed} record(s) failed (see {report_path}); the others were ingested",
                         fix="fix the records listed in the report, or run without --strict")
    return rep


def _write(batch: list[dict[str, Any]], docstore: Any, store: GraphStore, run_id: int, rep: IngestReport, fail: Any) -> None:
    docstore.write_batch(batch, run_id)
    sync_graph(store, batch)
    docstore.mark_synced([s["id"] for s in batch])
    rep.n_written += len(batch)
    rep.n_mentions += sum(len(s["mentions"]) for s in batch)
    for s in batch:
        for im in s["images"]:
            if im["status"] != "ok":
                rep.n_image_errors += 1
                fail(s["id"], s["id"], im["error"], "fix or drop the image; the study is kept text-only", "image")

"""``kgrag ingest``: records → validated studies → sections, mentions, images →
docstore (one transaction per batch) → graph store.

Idempotent and resumable: a study whose content hash is unchanged and already
synced to the graph is skipped; the docstore marks each study ``graph_synced``
only after its graph write, so a run killed at any point and rerun converges to
the same docstore and graph as an uninterrupted run.

Self-healing: a graph write stamps the Study node's content hash last (it is
null while the write is in progress), and every run first compares the graph's
hashes with the docstore's, so studies the graph lost (a server killed before
its AOF reached the disk, a dropped graph) are sent again, as are studies left
unsynced by an earlier failure, whatever manifest the run reads.

One bad record never aborts a run: ids must be printable and at most
:data:`MAX_ID_CHARS` long, text must be valid Unicode without NUL characters
(FalkorDB cuts a query at a NUL), and when a batch's graph write still fails,
its studies are written one by one and only the failing one is reported.
Image paths must stay inside the images root (the manifest's folder, or
``images_root``) unless ``allow_outside_images``.
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

from kgrag.errors import CypherError, InputError, KgragError, RecordError
from kgrag.graph.store import GraphStore
from kgrag.ingest.readers import RawRecord, detect_format, read
from kgrag.ingest.sections import compose, split_sections
from kgrag.types import SPLITS

log = logging.getLogger(__name__)

BATCH = 256
MAX_ID_CHARS = 256


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


def _text_problem(value: Any, where: str) -> str | None:
    """Where ``value`` (recursively) holds a NUL or a lone surrogate, or None."""
    if isinstance(value, str):
        i = value.find("\x00")
        if i >= 0:
            return f"{where} contains a NUL character at offset {i}"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            return f"{where} is not valid Unicode (lone surrogate at offset {e.start})"
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            bad = _text_problem(k, f"{where} key") or _text_problem(v, f"{where}.{k}")
            if bad:
                return bad
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            bad = _text_problem(v, f"{where}[{i}]")
            if bad:
                return bad
    return None


def check_study_id(sid: str) -> None:
    """Ids are printable (no control characters), at most MAX_ID_CHARS characters."""
    if len(sid) > MAX_ID_CHARS:
        raise RecordError(f"'id' has {len(sid)} characters, over the limit of {MAX_ID_CHARS}",
                          f"use ids of at most {MAX_ID_CHARS} printable characters")
    if not sid.isprintable():
        i = next(i for i, ch in enumerate(sid) if not ch.isprintable())
        raise RecordError(f"'id' {sid!r} contains the unprintable character U+{ord(sid[i]):04X} at offset {i}",
                          "ids must be printable text (no control characters such as NUL, tab or newline)")


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.is_relative_to(root)
    except ValueError:
        return False


def _file_digest(p: Path) -> str:
    try:
        st = p.stat()
    except OSError:
        return "missing"
    h = hashlib.sha256()
    with open(p, "rb") as f:
        h.update(f.read())
    return f"{st.st_size}:{h.hexdigest()[:16]}"


def validate(rec: RawRecord, max_chars: int, *, images_root: str | Path | None = None,
             allow_outside_images: bool = False) -> dict[str, Any]:
    """A raw record → a normalized study dict, or RecordError naming the fix.

    An image path that leaves ``images_root`` (default: the record's base folder, i.e.
    the manifest's folder or ``--images``) is refused (the study is kept text-only)
    unless ``allow_outside_images``; such a file is never opened."""
    d = rec.data or {}
    sid = d.get("id")
    if sid is None or (isinstance(sid, str) and not sid.strip()):
        raise RecordError("missing 'id'", "give every record a unique, non-empty 'id'")
    if not isinstance(sid, str | int) or isinstance(sid, bool):
        raise RecordError(f"'id' must be a string, got {type(sid).__name__}", "use a string id")
    sid = str(sid).strip()
    check_study_id(sid)
    bad = _text_problem(d, "the record")
    if bad:
        raise RecordError(bad, "remove NUL and other invalid characters from the record")
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
    root = Path(images_root or base).resolve()
    paths, refused = [], {}
    for p in images:
        full = Path(p) if os.path.isabs(p) else base / p
        real = full.resolve()  # symlinks followed: a link out of the root is refused too
        paths.append(str(real))
        if not allow_outside_images and not _inside(real, root):
            refused[str(real)] = (f"image {p} is outside the images root {root}; it was not read")
    labels = d.get("labels") or {}
    if not isinstance(labels, dict):
        raise RecordError("'labels' must be an object", "write labels as {concept: 0|1}")
    meta = dict(d.get("meta") or {})
    for k in ("site",):
        if k in d:
            meta[k] = d[k]
    study = {
        "id": sid, "split": split, "modality": d.get("modality") or "radiology", "report": report,
        "findings": findings, "impression": impression, "image_paths": paths, "image_refused": refused,
        "labels": labels, "questions": d.get("questions") or [], "meta": meta,
    }
    hashed = {k: study[k] for k in ("id", "split", "modality", "report", "labels", "questions", "meta")}
    hashed["images"] = [(p, "refused" if p in refused else _file_digest(Path(p))) for p in paths]
    study["content_hash"] = hashlib.sha256(json.dumps(hashed, sort_keys=True, default=str).encode()).hexdigest()
    return study


def check_images(paths: list[str], refused: dict[str, str] | None = None,
                 max_pixels: int | None = None) -> list[dict[str, Any]]:
    from kgrag.imaging import probe_image

    out = []
    for p in paths:
        if refused and p in refused:
            out.append({"path": p, "status": "error", "error": refused[p]})
            continue
        try:
            h, w = probe_image(p, max_pixels=max_pixels)
            out.append({"path": p, "status": "ok", "height": h, "width": w})
        except InputError as e:
            out.append({"path": p, "status": "error", "error": e.message})
    return out


# -- extraction workers -----------------------------------------------------------------
_EXTRACTOR = None
_MAX_IMAGE_PIXELS: int | None = None  # set by ingest() before the workers fork


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
        s["images"] = check_images(s["image_paths"], s.get("image_refused"), _MAX_IMAGE_PIXELS)
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
    """Study nodes (hash cleared: in progress), their ASSERTS, then the content hash.

    The hash is written last, so a graph that lost the tail of the writes (an engine
    killed before its log reached the disk) never shows a study as complete."""
    studies, mentions = _graph_rows(batch)
    ids = [s["id"] for s in batch]
    store.upsert_studies([{**s, "content_hash": None} for s in studies])
    store.delete_mentions(ids)
    store.upsert_mentions(mentions)
    store.upsert_studies(studies)


def _sync_isolating(store: GraphStore, batch: list[dict[str, Any]], fail: Any) -> list[str]:
    """Sync a batch; when the engine refuses it, each study alone, so only the bad one
    fails (reported as a ``graph`` error, left unsynced).  Returns the synced ids."""
    try:
        sync_graph(store, batch)
        return [s["id"] for s in batch]
    except (CypherError, InputError) as e:
        if len(batch) == 1:
            fail(batch[0]["id"], batch[0]["id"], f"graph write failed: {e.message}",
                 "fix the record and ingest again; it stays in the docstore, unsynced", "graph")
            return []
        log.warning("graph write of a %d-study batch failed (%s); writing its studies one by one",
                    len(batch), e.message.splitlines()[0][:200])
    ok = []
    for s in batch:
        ok += _sync_isolating(store, [s], fail)
    return ok


def _resync_from_docstore(docstore: Any, store: GraphStore, ids: list[str], fail: Any) -> int:
    """Studies in the docstore that the graph lacks (an interrupted or failed write)."""
    n = 0
    for chunk in _batches(ids, BATCH):
        batch = []
        for sid in chunk:
            st = docstore.get_study(sid)
            batch.append({"id": sid, "split": st.split, "modality": st.modality, "content_hash": st.content_hash,
                          "mentions": list(docstore.mentions(study_id=sid))})
        done = _sync_isolating(store, batch, fail)
        docstore.mark_synced(done)
        n += len(done)
    return n


def _check_graph_sync(docstore: Any, store: GraphStore, known: dict[str, tuple[str, int]]) -> list[str]:
    """Studies the docstore marks synced whose graph hash is missing or different."""
    graph = store.study_hashes()
    stale = [sid for sid, (h, synced) in known.items() if synced and graph.get(sid) != h]
    if stale:
        log.warning("%d studies are missing or out of date in the graph; sending them again", len(stale))
        docstore.mark_unsynced(stale)
    return stale


def ingest(settings: Any, source: str | Path, *, fmt: str | None = None, images_dir: str | Path | None = None,
           workers: int | None = None, strict: bool = False, progress: bool = True, report_path: str | Path | None = None,
           store: GraphStore | None = None, docstore: Any = None, images_root: str | Path | None = None,
           allow_outside_images: bool = False) -> IngestReport:
    from tqdm import tqdm

    from kgrag.docstore import DocStore
    from kgrag.ontology import concepts
    from kgrag.paths import private_dir, private_open

    t0 = time.perf_counter()
    # the source is checked before anything is started or recorded
    if not Path(source).exists():
        raise InputError(f"{source} does not exist", fix="check the path")
    fmt = fmt or detect_format(source)
    workers = workers or settings.ingest.workers
    global _EXTRACTOR, _MAX_IMAGE_PIXELS
    _MAX_IMAGE_PIXELS = settings.ingest.max_image_pixels
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
    try:
        if store is None:
            from kgrag.graph.factory import open_store

            store = open_store(settings)
        run_id = docstore.start_run(str(source))
        report_path = Path(report_path) if report_path else settings.runs_dir / "ingest" / f"run-{run_id}-errors.jsonl"
        private_dir(report_path.parent)
        errf = private_open(report_path, "w")
    except BaseException:
        if own_doc:
            docstore.close()
        if own_store and store is not None:
            store.close()
        raise

    def fail(ref: str, study_id: str | None, msg: str, fix: str, kind: str = "record") -> None:
        if kind in ("record", "graph"):
            rep.n_failed += 1
        e = {"record": ref, "id": study_id, "kind": kind, "error": msg, "fix": fix}
        rep.errors.append(e)
        errf.write(json.dumps(e) + "\n")
        errf.flush()

    ok = False
    try:
        store.upsert_concepts(concepts().values())
        known = docstore.hashes()
        _check_graph_sync(docstore, store, known)
        known = docstore.hashes()
        seen: set[str] = set()
        todo: list[dict[str, Any]] = []
        unchanged: list[str] = []
        with tqdm(desc="ingest", unit="report", disable=not progress) as bar:
            for rec in read(source, fmt, images_dir):
                rep.n_read += 1
                bar.update(1)
                if rec.error:
                    fail(rec.ref, None, rec.error, rec.fix or "fix the record")
                    continue
                try:
                    st = validate(rec, settings.ingest.max_report_chars, images_root=images_root,
                                  allow_outside_images=allow_outside_images)
                except RecordError as e:
                    rid = (rec.data or {}).get("id")
                    fail(rec.ref, rid if isinstance(rid, str | int) else None, e.message, e.fix)
                    continue
                if st["id"] in seen:
                    fail(rec.ref, st["id"], f"duplicate id {st['id']!r} (first occurrence kept)", "make ids unique")
                    continue
                seen.add(st["id"])
                prev = known.get(st["id"])
                if prev and prev[0] == st["content_hash"]:
                    rep.n_unchanged += 1
                    unchanged.append(st["id"])
                    continue
                todo.append(st)
        rewrite = {s["id"] for s in todo}
        unsynced = sorted(sid for sid, (_, synced) in known.items() if not synced and sid not in rewrite)
        if unsynced:
            _resync_from_docstore(docstore, store, unsynced, fail)
        for e in docstore.image_errors(unchanged):  # an unchanged study keeps its image errors in the report
            rep.n_image_errors += 1
            fail(e["study_id"], e["study_id"], e["error"], "fix or drop the image; the study is kept text-only", "image")
        with tqdm(total=len(todo), desc="extract", unit="report", disable=not progress) as bar:
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
        if rep.n_written or unsynced:
            store.compact()  # the next server start loads a snapshot instead of replaying the batches
        ok = True
    except BaseException as e:
        # the error file names what stopped the run, not only the records before it
        msg = e.message if isinstance(e, KgragError) else f"{type(e).__name__}: {e}"
        fix = (e.fix if isinstance(e, KgragError) else None) or "see the error above and run the same command again"
        try:
            fail(str(source), None, f"the run stopped: {msg}", fix, "fatal")
        except OSError:
            pass
        raise
    finally:
        try:
            errf.close()
        except OSError:
            pass
        rep.seconds = time.perf_counter() - t0
        rep.report_path = str(report_path)
        try:
            docstore.finish_run(run_id, n_read=rep.n_read, n_written=rep.n_written, n_unchanged=rep.n_unchanged,
                                n_failed=rep.n_failed, report_path=str(report_path))
        except KgragError:
            if ok:
                raise
            log.warning("could not record the end of ingest run %s", run_id)  # the run's own error follows
        finally:
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
    synced = _sync_isolating(store, batch, fail)
    docstore.mark_synced(synced)
    ok = set(synced)
    rep.n_written += len(ok)
    rep.n_mentions += sum(len(s["mentions"]) for s in batch if s["id"] in ok)
    for s in batch:
        for im in s["images"]:
            if im["status"] != "ok":
                rep.n_image_errors += 1
                fail(s["id"], s["id"], im["error"], "fix or drop the image; the study is kept text-only", "image")

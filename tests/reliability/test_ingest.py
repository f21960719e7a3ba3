"""Ingest under hostile input and failing storage.

Defects covered: 3 (a NUL in one id aborted the whole ingest; the sync did not heal),
6 (raising the report limit past 1,000,000 hit spaCy E088), 8 (images just under
Pillow's bomb limit decoded at full size), 9 (a full disk hidden behind "cannot
rollback"), 14e (a failed format detection still started the server and recorded a
run), 14f (unchanged reruns dropped earlier image errors), 14g (image paths could
point anywhere)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kgrag.config import load_settings
from kgrag.docstore import DocStore
from kgrag.errors import CypherError, KgragError, StorageError
from kgrag.ingest.pipeline import ingest
from tests.reliability.helpers import (
    assert_clean_failure,
    docstore_content,
    graph_content,
    kgrag,
    tmpfs,
)

GOOD = "FINDINGS: Small left pleural effusion. IMPRESSION: Cardiomegaly."


def _rows(n: int, start: int = 0) -> list[dict]:
    return [{"id": f"s{i:04d}", "report": GOOD if i % 2 else "No pneumothorax. Heart size is normal.",
             "split": ("train", "val", "test")[i % 3]} for i in range(start, start + n)]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _errors(rep) -> list[dict]:
    return [json.loads(x) for x in Path(rep.report_path).read_text().splitlines()]


# -- 3: one bad id, one bad record --------------------------------------------------------
def test_d03_a_nul_in_one_id_refuses_that_record_alone(tmp_path):
    rows = _rows(150) + [{"id": "nul\u0000id", "report": "x"}] + _rows(150, 150)
    m = _write(tmp_path / "m.jsonl", rows)
    r = kgrag(tmp_path / "home", "ingest", str(m), "--json", check=True)
    rep = json.loads(r.stdout)
    assert (rep["n_read"], rep["n_written"], rep["n_failed"]) == (301, 300, 1)
    errs = [json.loads(x) for x in Path(rep["report_path"]).read_text().splitlines()]
    assert len(errs) == 1 and errs[0]["record"] == "m.jsonl:151"
    assert "unprintable character U+0000" in errs[0]["error"] and errs[0]["fix"]
    s = load_settings(tmp_path / "home")
    with DocStore.from_settings(s) as ds:
        assert ds.counts()["unsynced"] == 0 and len(ds.study_ids()) == 300
    assert graph_content(s)["counts"]["studies"] == 300


@pytest.mark.parametrize("record, needle", [
    ({"id": "ok", "report": "No effusion.\u0000 Clear."}, "NUL character"),
    ({"id": "ok", "report": "Clear.", "meta": {"site": "a\u0000b"}}, "NUL character"),
    ({"id": "ok", "report": "bad \ud800 surrogate"}, "not valid Unicode"),
    ({"id": "tab\tid", "report": "Clear."}, "unprintable"),
    ({"id": "x" * 257, "report": "Clear."}, "over the limit of 256"),
    ({"id": True, "report": "Clear."}, "must be a string"),
])
def test_d03_invalid_text_is_refused_per_record(tmp_path, falkordb_store, record, needle):
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps(_rows(1)[0]) + "\n" + json.dumps(record) + "\n" + json.dumps(_rows(1, 1)[0]) + "\n")
    s = load_settings(tmp_path / "home")
    rep = ingest(s, m, progress=False, store=falkordb_store)
    assert (rep.n_written, rep.n_failed) == (2, 1)
    assert needle in _errors(rep)[0]["error"]
    assert falkordb_store.study_ids() == {"s0000", "s0001"}


class _RefusingStore:
    """The real store, except that the engine refuses any batch holding study ``bad``."""

    def __init__(self, store, bad: str) -> None:
        self._store, self._bad = store, bad

    def __getattr__(self, name):
        return getattr(self._store, name)

    def upsert_mentions(self, rows):
        rows = list(rows)
        if any(r["study_id"] == self._bad for r in rows):
            raise CypherError("merge_mentions.cypher", {"rows": rows[:1]}, "engine refused the batch")
        return self._store.upsert_mentions(rows)


def test_d03_a_refused_graph_write_fails_only_its_study_and_the_sync_heals(tmp_path, falkordb_store):
    m = _write(tmp_path / "m.jsonl", _rows(60))
    s = load_settings(tmp_path / "home")
    rep = ingest(s, m, progress=False, store=_RefusingStore(falkordb_store, "s0031"))
    assert (rep.n_written, rep.n_failed) == (59, 1)
    (err,) = _errors(rep)
    assert err["kind"] == "graph" and err["id"] == "s0031" and "engine refused" in err["error"]
    with DocStore.from_settings(s) as ds:
        assert ds.counts()["unsynced"] == 1
    # the next run sends what the graph lacks, whatever the manifest says (here: nothing new)
    rep2 = ingest(s, _write(tmp_path / "other.jsonl", _rows(1)), progress=False, store=falkordb_store)
    assert rep2.n_failed == 0
    with DocStore.from_settings(s) as ds:
        assert ds.counts()["unsynced"] == 0
    assert len(falkordb_store.study_ids()) == 60


def test_d03_studies_the_graph_lost_are_sent_again(tmp_path, corpus):
    """A graph that lost writes (a server killed before its AOF reached the disk, a dropped
    graph) is detected from the study hashes and refilled to the same content."""
    ref, s = load_settings(tmp_path / "ref"), load_settings(tmp_path / "home")
    ingest(ref, corpus, progress=False)
    ingest(s, corpus, progress=False)
    want = graph_content(ref)
    from kgrag.graph.factory import open_store

    store = open_store(s)
    lost = sorted(store.study_ids())[:25]
    store.delete_studies(lost)
    store.close()
    assert graph_content(s) != want
    rep = ingest(s, corpus, progress=False)
    assert rep.n_written == 0 and rep.n_unchanged == 160
    assert graph_content(s) == want
    assert docstore_content(s) == docstore_content(ref)


# -- 6: long reports --------------------------------------------------------------------
def test_d06_reports_over_a_million_characters_are_ingested(tmp_path, falkordb_store):
    text = "FINDINGS: Mild cardiomegaly. " + "Lorem ipsum dolor sit amet. " * 37_000 + "No pleural effusion."
    assert len(text) > 1_000_000
    m = _write(tmp_path / "m.jsonl", [{"id": "long", "report": text}])
    s = load_settings(tmp_path / "home", ingest={"max_report_chars": 2_000_000})
    rep = ingest(s, m, progress=False, store=falkordb_store)
    assert (rep.n_written, rep.n_failed) == (1, 0)
    with DocStore.from_settings(s) as ds:
        assert ds.study_concepts()["long"] == {"cardiomegaly": "present", "pleural_effusion": "absent"}
        assert all(text[x.start:x.end] == x.text for x in ds.mentions("long"))


# -- 8: image bombs ---------------------------------------------------------------------
_PEAK = """
import resource, sys
from kgrag.imaging import load_image, probe_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    if sys.argv[2] == "probe":
        print(probe_image(sys.argv[1]))
    else:
        print(load_image(sys.argv[1], size=128).shape)
except Exception as e:
    print(type(e).__name__, e)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def _peak_mb(path: Path, mode: str) -> tuple[str, int]:
    r = subprocess.run([sys.executable, "-c", _PEAK, str(path), mode], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert r.returncode == 0, r.stderr
    out, mb = r.stdout.strip().rsplit("\n", 1)
    return out, int(mb)


def test_d08_images_over_the_pixel_cap_are_refused_before_decoding(tmp_path, falkordb_store):
    from PIL import Image

    bomb = tmp_path / "img" / "bomb.png"
    bomb.parent.mkdir()
    Image.new("RGBA", (9000, 9000)).save(bomb)  # 81 MP, under Pillow's 89 MP warning
    assert bomb.stat().st_size < 1_000_000
    out, grew = _peak_mb(bomb, "probe")
    assert "InputError" in out and "over the limit of 40 MP" in out and grew < 50, (out, grew)
    # in a manifest: the study is kept text-only, the run goes on
    m = _write(tmp_path / "m.jsonl", [{"id": "b", "report": GOOD, "images": ["img/bomb.png"]}, *_rows(2)])
    rep = ingest(load_settings(tmp_path / "home"), m, progress=False, store=falkordb_store)
    assert (rep.n_written, rep.n_image_errors) == (3, 1)
    assert "over the limit" in _errors(rep)[0]["error"]
    # the cap is a setting
    s = load_settings(tmp_path / "h2", ingest={"max_image_pixels": 100_000_000})
    from kgrag.imaging import probe_image

    assert probe_image(bomb, max_pixels=s.ingest.max_image_pixels) == (9000, 9000)


def test_d08_big_jpegs_are_decoded_at_reduced_scale(tmp_path):
    from PIL import Image

    big = tmp_path / "big.jpg"
    Image.new("L", (7000, 5000), 128).save(big, quality=50)  # 35 MP: under the cap
    out, grew = _peak_mb(big, "load")
    assert out == "(128, 128)" and grew < 60, (out, grew)  # a full decode needs > 170 MB
    out, grew = _peak_mb(big, "probe")
    assert out == "(5000, 7000)" and grew < 60, (out, grew)


# -- 9: a full disk under the docstore -----------------------------------------------------
def test_d09_full_docstore_names_the_cause_not_a_rollback_error(tmp_path):
    from kgrag.types import Mention, Section

    ds = DocStore(tmp_path / "d.sqlite")
    pages = ds.conn.execute("PRAGMA page_count").fetchone()[0]
    ds.conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # the file cannot grow: SQLITE_FULL
    rec = {"id": "a", "split": "train", "modality": "radiology", "report": "x" * 50_000, "content_hash": "h",
           "sections": [Section("a", "findings", "x" * 50_000, 0, 50_000)],
           "mentions": [Mention("a", "edema", "Finding", "present", "findings", "x", 0, 1)], "images": []}
    with pytest.raises(StorageError) as ei:
        ds.write_batch([rec])
    assert "disk is full" in ei.value.message and "free disk space" in ei.value.fix
    assert "rollback" not in str(ei.value).lower()
    assert not ds.conn.in_transaction and ds.counts()["studies"] == 0
    ds.close()


def test_d09_ingest_on_a_full_disk_exits_with_the_cause(tmp_path, need_mount, corpus):
    rows = [json.loads(x) for x in corpus.read_text().splitlines()]
    big = [{**r, "id": f"{r['id']}-{k}", "images": [], "report": r.get("report") or "Clear. " * 300}
           for k in range(4) for r in rows]
    m = _write(tmp_path / "m.jsonl", big)
    home = tmp_path / "home"
    with tmpfs(home, "3m"):
        r = kgrag(home, "ingest", str(m))
        assert_clean_failure(r, "disk is full", "free disk space")
        assert "no transaction is active" not in r.stderr


# -- 14e, 14f, 14g -------------------------------------------------------------------------
def test_d14e_a_failed_format_detection_starts_nothing(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a manifest\n")
    home = tmp_path / "home"
    r = kgrag(home, "ingest", str(notes))
    assert_clean_failure(r, "cannot tell the format", "--format")
    assert not (home / "graph").exists() and not (home / "docstore.sqlite").exists()


def test_d14f_unchanged_reruns_keep_earlier_image_errors(tmp_path, falkordb_store):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    m = _write(tmp_path / "m.jsonl", [{"id": "i", "report": GOOD, "images": ["img/broken.png"]}, *_rows(3)])
    s = load_settings(tmp_path / "home")
    r1 = ingest(s, m, progress=False, store=falkordb_store)
    r2 = ingest(s, m, progress=False, store=falkordb_store)
    assert (r1.n_image_errors, r2.n_image_errors, r2.n_written, r2.n_unchanged) == (1, 1, 0, 4)
    e1, e2 = _errors(r1), _errors(r2)
    assert [e["kind"] for e in e2] == ["image"] and e2[0]["error"] == e1[0]["error"]


def test_d14g_image_paths_must_stay_inside_the_images_root(tmp_path, falkordb_store):
    from PIL import Image

    corpus = tmp_path / "corpus"
    (corpus / "img").mkdir(parents=True)
    Image.new("L", (32, 32), 10).save(corpus / "img" / "in.png")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.new("L", (32, 32), 20).save(outside / "out.png")
    fifo = tmp_path / "secret"
    os.mkfifo(fifo)  # reading it would hang: a refused path must never be opened
    (corpus / "img" / "link.png").symlink_to(outside / "out.png")
    m = _write(corpus / "m.jsonl", [
        {"id": "in", "report": GOOD, "images": ["img/in.png"]},
        {"id": "dotdot", "report": GOOD, "images": ["../elsewhere/out.png"]},
        {"id": "abs", "report": GOOD, "images": [str(fifo)]},
        {"id": "link", "report": GOOD, "images": ["img/link.png"]},
    ])
    s = load_settings(tmp_path / "home")
    rep = ingest(s, m, progress=False, store=falkordb_store)
    errs = {e["id"]: e["error"] for e in _errors(rep)}
    assert set(errs) == {"dotdot", "abs", "link"} and all("outside the images root" in v for v in errs.values())
    with DocStore.from_settings(s) as ds:
        assert [Path(p).name for p in ds.get_study("in").images] == ["in.png"]
        assert ds.get_study("dotdot").images == []
    # a wider root, or the explicit flag, lets the outside images in (the FIFO stays out)
    m2 = _write(corpus / "m2.jsonl", [{"id": "dotdot2", "report": GOOD, "images": ["../elsewhere/out.png"]}])
    rep2 = ingest(s, m2, progress=False, store=falkordb_store, images_root=tmp_path / "elsewhere")
    assert rep2.n_image_errors == 0
    r = kgrag(tmp_path / "h3", "ingest", str(m2), "--allow-outside-images", "--json", check=True)
    assert json.loads(r.stdout)["n_image_errors"] == 0
    kgrag(tmp_path / "h3", "db", "stop")


def test_record_errors_go_to_the_error_file_as_they_happen(tmp_path, falkordb_store):
    """A run stopped by a fatal error still leaves the records seen so far in the file,
    and names the fatal error."""
    rows = [{"report": "no id"}, *_rows(5)]
    m = _write(tmp_path / "m.jsonl", rows)
    s = load_settings(tmp_path / "home")

    class Dies:
        def __getattr__(self, name):
            return getattr(falkordb_store, name)

        def upsert_mentions(self, rows):
            from kgrag.errors import GraphUnavailableError

            raise GraphUnavailableError("the graph went away", fix="kgrag db start")

    report = tmp_path / "errors.jsonl"
    with pytest.raises(KgragError, match="went away"):
        ingest(s, m, progress=False, store=Dies(), report_path=report)
    kinds = [json.loads(x)["kind"] for x in report.read_text().splitlines()]
    assert kinds == ["record", "fatal"]

"""The ingest pipeline against an in-memory graph store: study-level ASSERTS, idempotence,
changed records, bad records, workers, and kill -9 at chosen points followed by a rerun."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _ingest_fake_store import FakeGraphStore

from kgrag.config import load_settings
from kgrag.docstore import DocStore
from kgrag.errors import InputError
from kgrag.ingest.pipeline import _graph_rows, ingest
from kgrag.types import Mention

HERE = Path(__file__).parent

FINDINGS = [
    "Small left pleural effusion.",
    "No pleural effusion or pneumothorax.",
    "The heart is enlarged.",
    "Heart size is normal.",
    "Patchy opacity in the right lower lobe concerning for pneumonia.",
    "Calcified granuloma in the left upper lobe.",
    "Mild bibasilar atelectasis.",
    "Lungs are clear without consolidation or edema.",
    "Hyperexpanded lungs with flattened diaphragms.",
    "Cannot exclude a small right apical pneumothorax.",
]
IMPRESSIONS = ["No acute cardiopulmonary process.", "Cardiomegaly.", "Congestive heart failure.",
               "Right lower lobe pneumonia.", "Possible pneumonia."]


def write_manifest(path: Path, n: int, extra: list[bytes] = ()) -> Path:
    lines = []
    for i in range(n):
        f = " ".join(FINDINGS[(i + k) % len(FINDINGS)] for k in range(3))
        lines.append(json.dumps({"id": f"s{i:04d}", "findings": f, "impression": IMPRESSIONS[i % len(IMPRESSIONS)],
                                 "split": ("train", "val", "test")[i % 3]}).encode())
    path.write_bytes(b"\n".join([*lines, *extra]) + b"\n")
    return path


def test_graph_rows_are_study_level_with_counts():
    def m(c, a, sent):
        return Mention("s1", c, "Finding", a, "findings", sent, 0, 1)

    batch = [{"id": "s1", "split": "train", "modality": "radiology", "content_hash": "h",
              "mentions": [m("pleural_effusion", "absent", "No effusion."), m("pleural_effusion", "uncertain", "Possible effusion."),
                           m("pneumonia", "uncertain", "Possible pneumonia."), m("pneumonia", "present", "Pneumonia."),
                           m("pneumonia", "absent", "No pneumonia on the left.")]}]
    studies, rows = _graph_rows(batch)
    assert studies == [{"id": "s1", "split": "train", "modality": "radiology", "content_hash": "h"}]
    by = {r["concept"]: r for r in rows}
    assert by["pleural_effusion"]["assertion"] == "uncertain" and by["pleural_effusion"]["count"] == 2
    assert by["pleural_effusion"]["sentence"] == "Possible effusion."
    assert by["pneumonia"]["assertion"] == "present" and by["pneumonia"]["count"] == 3
    assert by["pneumonia"]["sentence"] == "Pneumonia."


def test_ingest_idempotent_and_changed_records_replaced(tmp_path):
    s = load_settings(tmp_path / "home")
    m = write_manifest(tmp_path / "m.jsonl", 12)
    store = FakeGraphStore()
    r1 = ingest(s, m, progress=False, store=store)
    assert (r1.n_read, r1.n_written, r1.n_failed) == (12, 12, 0)
    with DocStore.from_settings(s) as ds:
        d1 = ds.dump()
        level = ds.study_concepts()
    g1 = json.dumps(store.dump(), sort_keys=True)
    # the graph holds exactly the docstore's study-level assertions
    assert {k: v["assertion"] for k, v in store.asserts.items()} == {
        f"{sid}|{c}": a for sid, cs in level.items() for c, a in cs.items()}
    assert level["s0000"]["pleural_effusion"] == "present"  # "Small left ..." beats "No pleural effusion"
    assert level["s0000"]["cardiomegaly"] == "present"

    calls = dict(store.calls)
    r2 = ingest(s, m, progress=False, store=store)
    assert (r2.n_written, r2.n_unchanged) == (0, 12)
    assert store.calls["upsert_mentions"] == calls["upsert_mentions"]  # nothing re-sent
    with DocStore.from_settings(s) as ds:
        assert ds.dump() == d1
    assert json.dumps(store.dump(), sort_keys=True) == g1

    rows = [json.loads(x) for x in m.read_text().splitlines()]
    rows[0] = {"id": "s0000", "report": "FINDINGS: No pleural effusion. IMPRESSION: Normal chest."}
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r3 = ingest(s, m, progress=False, store=store)
    assert r3.n_written == 1 and r3.n_unchanged == 11
    assert {k: v["assertion"] for k, v in store.asserts.items() if k.startswith("s0000|")} == {
        "s0000|pleural_effusion": "absent", "s0000|no_finding": "present"}
    with DocStore.from_settings(s) as ds:
        assert {m.concept for m in ds.mentions("s0000")} == {"pleural_effusion", "no_finding"}


def test_bad_records_land_in_the_report(tmp_path):
    s = load_settings(tmp_path / "home", ingest={"max_report_chars": 500})
    bad = [b'{"id": "bad-json"', b'{"report": "no id"}', b'{"id": "s0001", "report": "Duplicate."}',
           b'{"id": "latin1", "report": "caf\xe9"}', b'{"id": "empty", "report": "  "}',
           b'{"id": "long", "report": "' + b"a" * 600 + b'"}',
           b'{"id": "img", "report": "No pneumothorax.", "images": ["nope.png"]}']
    m = write_manifest(tmp_path / "m.jsonl", 5, bad)
    store = FakeGraphStore()
    rep = ingest(s, m, progress=False, store=store, report_path=tmp_path / "errors.jsonl")
    assert (rep.n_read, rep.n_failed, rep.n_written, rep.n_image_errors) == (12, 6, 6, 1)
    errs = [json.loads(x) for x in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert [e["record"] for e in errs if e["kind"] == "record"] == [f"m.jsonl:{i}" for i in range(6, 12)]
    assert all(e["fix"] for e in errs)
    assert set(store.studies) == {f"s{i:04d}" for i in range(5)} | {"img"}
    with pytest.raises(InputError, match="6 record"):
        ingest(s, m, progress=False, store=store, strict=True)


def test_two_workers_give_the_same_result(tmp_path):
    m = write_manifest(tmp_path / "m.jsonl", 80)
    dumps = []
    for w in (1, 2):
        s = load_settings(tmp_path / f"home{w}")
        store = FakeGraphStore()
        ingest(s, m, progress=False, store=store, workers=w)
        with DocStore.from_settings(s) as ds:
            dumps.append((ds.dump(), store.dump()))
    assert dumps[0] == dumps[1]


RUNNER = """
import sys
sys.path.insert(0, {tests!r})
import kgrag.ingest.pipeline as p
from kgrag.config import load_settings
from _ingest_fake_store import FakeGraphStore
p.BATCH = 10
kill = sys.argv[3] if len(sys.argv) > 3 else None
p.ingest(load_settings(sys.argv[1]), sys.argv[2], progress=False,
         store=FakeGraphStore(sys.argv[1] + "/graph.json", kill_after=kill))
"""


@pytest.mark.parametrize("kill_after", ["delete_mentions:3", "upsert_mentions:4"])
def test_kill9_then_rerun_matches_uninterrupted(tmp_path, kill_after):
    m = write_manifest(tmp_path / "m.jsonl", 60)
    script = tmp_path / "run.py"
    script.write_text(RUNNER.format(tests=str(HERE)))

    def run(home: Path, kill: str | None) -> int:
        home.mkdir(exist_ok=True)
        args = [sys.executable, str(script), str(home), str(m)] + ([kill] if kill else [])
        return subprocess.run(args, capture_output=True, timeout=120).returncode

    assert run(tmp_path / "ref", None) == 0
    assert run(tmp_path / "killed", kill_after) == -9
    with DocStore(tmp_path / "killed" / "docstore.sqlite") as ds:
        assert ds.counts()["unsynced"] > 0 or ds.counts()["studies"] < 60  # really interrupted
    assert run(tmp_path / "killed", None) == 0
    with DocStore(tmp_path / "ref" / "docstore.sqlite") as a, DocStore(tmp_path / "killed" / "docstore.sqlite") as b:
        assert a.dump() == b.dump()
    ga = json.loads((tmp_path / "ref" / "graph.json").read_text())
    gb = json.loads((tmp_path / "killed" / "graph.json").read_text())
    assert ga == gb and len(ga["asserts"]) > 60

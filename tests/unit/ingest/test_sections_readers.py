import json
import tarfile

import pytest

from kgrag.ingest.readers import detect_format, read
from kgrag.ingest.sections import compose, split_sections


def test_split_sections_offsets():
    text = "INDICATION: Cough.\nCOMPARISON: None.\nFINDINGS: Clear lungs.\nIMPRESSION: Normal."
    secs = split_sections("s", text)
    assert [s.name for s in secs] == ["indication", "comparison", "findings", "impression"]
    for s in secs:
        assert text[s.start:s.end] == s.text
    assert secs[2].text.strip() == "Clear lungs."


def test_unsectioned_text_is_findings_and_compose():
    assert [s.name for s in split_sections("s", "Clear lungs.")] == ["findings"]
    t = compose("Clear.", "Normal.")
    assert t == "FINDINGS: Clear.\n\nIMPRESSION: Normal."
    assert [s.name for s in split_sections("s", t)] == ["findings", "impression"]


def test_jsonl_reader_reports_bad_lines(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_bytes(b'{"id": "a", "report": "x"}\n{bad json\n\xff\xfe\n[1]\n\n{"id": "b", "report": "y"}\n')
    recs = list(read(p))
    assert [r.ref for r in recs] == ["m.jsonl:1", "m.jsonl:2", "m.jsonl:3", "m.jsonl:4", "m.jsonl:6"]
    assert recs[0].data["id"] == "a" and recs[4].data["id"] == "b"
    assert "bad JSON" in recs[1].error and "UTF-8" in recs[2].error and "object" in recs[3].error


OPENI = b"""<?xml version="1.0" encoding="utf-8"?>
<eCitation><uId id="CXR7"/><MedlineCitation><Article><Abstract>
<AbstractText Label="COMPARISON">None.</AbstractText>
<AbstractText Label="INDICATION">Chest pain.</AbstractText>
<AbstractText Label="FINDINGS">The heart is enlarged. No pleural effusion.</AbstractText>
<AbstractText Label="IMPRESSION">Cardiomegaly.</AbstractText>
</Abstract></Article></MedlineCitation>
<MeSH><major>Cardiomegaly/mild</major><major>Lung/hyperdistention</major><major>Something Unmapped</major></MeSH>
<parentImage id="CXR7_IM-1"><url>/x.png</url></parentImage></eCitation>"""


def test_openi_directory_and_archive(tmp_path):
    d = tmp_path / "ecgen-radiology"
    d.mkdir()
    (d / "7.xml").write_bytes(OPENI)
    (d / "8.xml").write_bytes(b"<eCitation><broken")
    recs = list(read(tmp_path))
    good = [r for r in recs if r.data]
    assert len(good) == 1 and any(r.error for r in recs)
    g = good[0].data
    assert g["id"] == "CXR7" and g["findings"].startswith("The heart")
    assert g["labels"] == {"cardiomegaly": 1, "hyperinflation": 1}
    assert g["meta"]["mesh"][2] == "Something Unmapped"
    from kgrag.ingest.fetch import split_for

    assert g["split"] == split_for("CXR7")  # same split as the fetched manifest
    tgz = tmp_path / "NLMCXR_reports.tgz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(d / "7.xml", arcname="ecgen-radiology/7.xml")
    assert detect_format(tgz) == "openi"
    assert [r.data["id"] for r in read(tgz)] == ["CXR7"]
    imgs = tmp_path / "imgs"
    with_images = list(read(tgz, images_dir=imgs))[0]
    assert with_images.data["images"] == ["CXR7_IM-1.png"]


def test_mimic_csv(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("study_id,report,image_paths,split\n50,FINDINGS: Clear.,a.dcm;b.dcm,val\n51,,,\n", encoding="utf-8")
    recs = list(read(p))
    assert recs[0].data == {"id": "50", "report": "FINDINGS: Clear.", "split": "val", "images": ["a.dcm", "b.dcm"]}
    assert recs[1].data == {"id": "51"}
    bad = tmp_path / "bad.csv"
    bad.write_text("name,text\nx,y\n")
    assert "no id column" in list(read(bad))[0].error


def test_detect_format_errors(tmp_path):
    from kgrag.errors import InputError

    with pytest.raises(InputError):
        detect_format(tmp_path / "x.txt")


def test_fetch_split_is_stable():
    from kgrag.ingest.fetch import split_for

    ids = [f"CXR{i}" for i in range(2000)]
    a = [split_for(i) for i in ids]
    assert a == [split_for(i) for i in ids]
    frac = {s: a.count(s) / len(a) for s in ("train", "val", "test")}
    assert abs(frac["train"] - 0.7) < 0.04 and abs(frac["val"] - 0.1) < 0.03 and abs(frac["test"] - 0.2) < 0.03
    assert json.dumps(a) != json.dumps([split_for(i, seed=1) for i in ids])

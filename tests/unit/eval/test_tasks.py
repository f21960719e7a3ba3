"""Task evaluators on hand-made records, and the eval JSON of an extraction run."""

import json

import numpy as np
import pytest

from kgrag.eval import tasks as T
from kgrag.eval.data import EvalStudy


def _study(sid, labels=None, report="", findings=None, impression=None, questions=None):
    return EvalStudy(id=sid, report=report, findings=findings, impression=impression, images=[],
                     labels=labels or {}, questions=questions or [])


ROLES = {"consolidation": "Finding", "pleural_effusion": "Finding", "pneumonia": "Diagnosis",
         "heart_failure": "Diagnosis"}


def _ctx(studies, query_sets, doc_assertions):
    return T.Context(studies={s.id: s for s in studies}, vocabulary=[], roles=ROLES, query_sets=query_sets,
                     doc_sets={d: frozenset(c for c, v in a.items() if v == "present") for d, a in doc_assertions.items()},
                     doc_assertions=doc_assertions)


DOCS = {"d1": {"consolidation": "present", "pneumonia": "present"},
        "d2": {"consolidation": "present"},
        "d3": {"pleural_effusion": "present", "heart_failure": "present"},
        "d4": {"consolidation": "absent"}}


def test_retrieval_by_hand():
    q = frozenset({"consolidation", "pneumonia"})
    ctx = _ctx([_study("q1")], {"q1": q}, DOCS)
    recs = {"q1": {"evidence": ["d2", "d1", "d3"]}}
    ev = T.RetrievalEval()
    d = ev.data(["q1"], recs, ctx)
    m = ev.full(d, ctx)
    # the only exact match d1 sits at rank 2; d1 also shares the diagnosis set {pneumonia}
    assert m["mrr"] == pytest.approx(0.5)
    assert m["concept_match@1"] == 0.0 and m["concept_match@5"] == 1.0
    assert m["recall@1"] == 0.0 and m["recall@5"] == 1.0
    assert m["top1_accuracy"] == 0.0 and m["top10_accuracy"] == 1.0
    # Jaccard with the query: d2 1/2, d1 1, d3 0
    assert m["mean_jaccard"] == pytest.approx(0.5)
    assert ev.scalar(d, "mrr", np.array([0, 0])) == pytest.approx(0.5)


def test_diagnosis_scorers_by_hand():
    studies = [_study(f"q{i}", {"pneumonia": y}) for i, y in enumerate([1, 0, 1, 0])]
    ctx = _ctx(studies, {}, DOCS)
    probs = [0.9, 0.4, 0.4, 0.2]
    ev_ids = [["d1", "d2"], ["d2", "d4"], ["d1", "d3"], ["d3", "d4"]]  # votes for pneumonia: 1/2, 0, 1/2, 0
    recs = {f"q{i}": {"evidence": ev_ids[i], "diagnoses": {"pneumonia": probs[i]}, "image_findings": {}}
            for i in range(4)}
    ev = T.DiagnosisEval(["pneumonia"])
    d = ev.data(list(recs), recs, ctx)
    assert list(d["PV"][:, 0]) == [0.5, 0.0, 0.5, 0.0]
    m = ev.full(d, ctx)
    assert m["answer"]["macro_auc"] == pytest.approx(0.875)
    assert m["vote"]["macro_auc"] == pytest.approx(1.0)
    # answer >= 0.5 only for q0: TPR 1/2, TNR 1
    assert m["answer"]["macro_balanced_accuracy"] == pytest.approx(0.75)
    assert ev.scalar(d, "answer_macro_auc") == pytest.approx(0.875)
    assert ev.scalar(d, "vote_macro_balanced_accuracy") == pytest.approx(1.0)
    # a diagnosis the answer leaves out counts 0; without an answer (noise) the scorer is absent
    recs["q1"]["diagnoses"] = {}
    assert ev.data(list(recs), recs, ctx)["PA"][1, 0] == 0.0
    noisy = {q: {**r, "diagnoses": None} for q, r in recs.items()}
    dn = ev.data(list(noisy), noisy, ctx)
    assert ev.full(dn, ctx)["answer"] is None and ev.scalar(dn, "answer_macro_auc") is None


def test_vqa_unanswered_counts_wrong():
    studies = [_study("q0"), _study("q1"), _study("q2")]
    ctx = _ctx(studies, {}, DOCS)
    qm = [{"answer": "yes", "concept": "pneumonia"}, {"answer": "no", "concept": "pneumonia"},
          {"answer": "yes", "concept": "pneumonia"}]
    ans = [{"yes_no": "yes", "probability": 0.8}, {"yes_no": "yes", "probability": 0.6},
           {"yes_no": None, "probability": None}]
    recs = {f"q{i}#q0": {"evidence": ["d1"], "answer": ans[i], "question": qm[i]} for i in range(3)}
    ev = T.VQAEval()
    d = ev.data(list(recs), recs, ctx)
    m = ev.full(d, ctx)
    assert m["answer"]["accuracy"] == pytest.approx(1 / 3)  # right, wrong, unanswered
    assert m["answer"]["coverage"] == pytest.approx(2 / 3) and m["answer"]["answered_accuracy"] == pytest.approx(0.5)
    assert m["answer"]["auc"] == pytest.approx(1.0)  # 0.8 (yes) above 0.6 (no)
    assert m["vote"]["accuracy"] == pytest.approx(2 / 3)  # d1 asserts pneumonia: always yes
    assert ev.scalar(d, "answer_accuracy") == pytest.approx(1 / 3)
    assert list(d["sid"]) == ["q0", "q1", "q2"]


def test_report_texts_are_cleaned():
    txt = ("FINDINGS: The image shows lung opacity (p = 0.51). IMPRESSION: Pneumonia likely [s12]. "
           "Compare: s1, s2, s3.")
    assert T.clean_generated(txt, "report") == "The image shows lung opacity (p = 0.51). Pneumonia likely ."
    assert T.clean_generated(txt, "impression") == "Pneumonia likely ."
    assert T.plain_text("Heart is big.", "Cardiomegaly.", None, "report") == "Heart is big. Cardiomegaly."
    assert T.plain_text("Heart is big.", "Cardiomegaly.", None, "impression") == "Cardiomegaly."
    assert T.plain_text(None, None, "FINDINGS: Clear lungs.", "report") == "Clear lungs."


def test_extraction_eval_by_hand():
    studies = [_study("a", {"pneumonia": 1, "nodule": 0}), _study("b", {"nodule": 1})]
    ctx = _ctx(studies, {}, {})
    recs = {"a": {"pneumonia": "present"}, "b": {"nodule": "uncertain", "pneumonia": "present"}}
    ev = T.ExtractionEval(["pneumonia", "nodule"])
    d = ev.data(["a", "b"], recs, ctx)
    m = ev.full(d, ctx)
    # present: pneumonia tp 1 fp 1, nodule fn 1 -> micro P 1/2, R 1/2
    assert m["present"]["micro_f1"] == pytest.approx(0.5)
    assert m["u_ones"]["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1))  # tp 2 fp 1 fn 0
    assert ev.scalar(d, "present_micro_f1") == pytest.approx(0.5)
    assert ev.scalar(d, "present_macro_f1") == pytest.approx((2 / 3 + 0.0) / 2)


def test_extraction_run_writes_the_eval_json(tmp_path):
    from kgrag.config import load_settings
    from kgrag.eval.harness import FORMAT, run_eval

    rows = [{"id": "t1", "findings": "Right lower lobe consolidation.", "impression": "Pneumonia.", "split": "test",
             "labels": {"consolidation": 1, "pneumonia": 1}},
            {"id": "t2", "findings": "No consolidation. Small left pleural effusion.", "split": "test",
             "labels": {"pleural_effusion": 1}},
            {"id": "t3", "findings": "The lungs are clear.", "split": "test", "labels": {}},
            {"id": "r1", "findings": "Cardiomegaly.", "split": "train", "labels": {"cardiomegaly": 1}}]
    man = tmp_path / "m.jsonl"
    man.write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = load_settings(tmp_path / "home")
    res = run_eval(s, man, ["extraction"], n_boot=20, n_perm=20, progress=False, command="test")
    out = json.loads((tmp_path / "home" / "runs" / "eval").glob("*/results.json").__next__().read_text())
    assert out["format"] == FORMAT == res["format"]
    for k in ("run", "manifest", "home", "results", "variants", "notes", "outputs"):
        assert k in out
    assert out["run"]["seed"] == 13 and out["run"]["command"] == "test" and "machine" in out["run"]
    assert out["manifest"]["n_test"] == 3 and out["manifest"]["splits"] == {"test": 3, "train": 1}
    ex = out["results"]["extraction"]
    m = ex["variants"]["extractor"]["metrics"]
    # the train study's label names the vocabulary but has no positive test study: left out
    assert m["labels"] == ["consolidation", "pleural_effusion", "pneumonia"]
    assert m["present"]["micro_f1"] == pytest.approx(1.0)
    assert ex["variants"]["extractor"]["ci"]["present_micro_f1"]["n_boot"] == 20
    d = tmp_path / "home" / "runs" / "eval"
    run = next(d.iterdir())
    assert {"results.json", "results.md", "report.html", "predictions.jsonl"} <= {p.name for p in run.iterdir()}
    assert "## extraction" in (run / "results.md").read_text()

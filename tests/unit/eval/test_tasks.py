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
    # the answer's untruncated P(c | V_I) (the output's concepts) wins over the listed diagnoses
    full = {q: {**r, "concepts": {"pneumonia": p}} for (q, r), p in zip(recs.items(), [0.9, 0.05, 0.04, 0.02], strict=True)}
    d = ev.data(list(full), full, ctx)
    assert list(d["PA"][:, 0]) == [0.9, 0.05, 0.04, 0.02] and ev.scalar(d, "answer_macro_auc") == pytest.approx(0.75)


def test_diagnosis_answer_reads_every_concepts_posterior():
    """A findings-text query has no image findings and ``diagnoses`` keeps only the likeliest:
    the answer's probability of any concept is its entry in ``concepts`` (absent: not scored)."""
    studies = [_study("q0", {"pneumonia": 1, "cardiomegaly": 1}), _study("q1", {"cardiomegaly": 1}),
               _study("q2"), _study("q3")]
    ctx = _ctx(studies, {}, DOCS)
    post = [{"pneumonia": 0.04, "cardiomegaly": 1.0}, {"pneumonia": 0.03, "cardiomegaly": 1.0},
            {"pneumonia": 0.02, "cardiomegaly": 0.0}, {"pneumonia": 0.01}]
    recs = {f"q{i}": {"evidence": ["d1"], "diagnoses": {}, "image_findings": {}, "concepts": post[i]} for i in range(4)}
    ev = T.DiagnosisEval(["pneumonia", "cardiomegaly"])
    d = ev.data(list(recs), recs, ctx)
    assert list(d["PA"][:, 0]) == [0.04, 0.03, 0.02, 0.01]
    assert list(d["PA"][:3, 1]) == [1.0, 1.0, 0.0] and np.isnan(d["PA"][3, 1])
    per = ev.full(d, ctx)["answer"]["per_concept"]
    assert per["pneumonia"]["auc"] == pytest.approx(1.0) and per["cardiomegaly"]["n"] == 3
    assert per["cardiomegaly"]["auc"] == pytest.approx(1.0)


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


def test_resample_scalars_equal_the_metric_on_the_materialised_resample():
    """scalar(d, m, idx) uses multiplicities; it must equal the library metric on d[idx]."""
    from kgrag.eval import metrics as M

    rng = np.random.default_rng(5)
    n = 40
    studies = [_study(f"q{i}", {"pneumonia": int(rng.random() < 0.4), "heart_failure": int(rng.random() < 0.3)})
               for i in range(n)]
    ctx = _ctx(studies, {}, DOCS)
    recs = {s.id: {"evidence": list(rng.choice(list(DOCS), 4)),
                   "diagnoses": {"pneumonia": float(np.round(rng.random(), 1)), "heart_failure": float(rng.random())},
                   "image_findings": {}} for s in studies}
    ev = T.DiagnosisEval(["pneumonia", "heart_failure"])
    d = ev.data(list(recs), recs, ctx)
    for _ in range(5):
        idx = rng.integers(0, n, n)
        dd = T.take(d, idx)
        aucs = [M.auc(dd["Y"][:, j], dd["PA"][:, j]) for j in range(2)]
        assert ev.scalar(d, "answer_macro_auc", idx) == pytest.approx(np.mean([a for a in aucs if a is not None]))
        bal = [M.binary_metrics(dd["Y"][:, j].astype(int), (dd["PA"][:, j] >= 0.5).astype(int))["balanced_accuracy"]
               for j in range(2) if 0 < dd["Y"][:, j].sum() < n]
        assert ev.scalar(d, "answer_macro_balanced_accuracy", idx) == pytest.approx(np.mean(bal))
    qm = [{"answer": "yes" if rng.random() < 0.5 else "no", "concept": "pneumonia"} for _ in range(n)]
    vrec = {f"q{i}#q0": {"evidence": ["d1", "d3"], "question": qm[i],
                         "answer": {"yes_no": "yes" if p >= 0.5 else "no", "probability": p}}
            for i, p in enumerate(np.round(rng.random(n), 2))}
    vq = T.VQAEval()
    dv = vq.data(list(vrec), vrec, ctx)
    idx = rng.integers(0, n, n)
    dd = T.take(dv, idx)
    assert vq.scalar(dv, "answer_auc", idx) == pytest.approx(M.auc(dd["y"], dd["pa"]))
    assert vq.scalar(dv, "answer_accuracy", idx) == pytest.approx(np.mean(dd["ya"] == dd["y"]))
    assert vq.scalar(dv, "answer_f1", idx) == pytest.approx(
        M.binary_metrics(dd["y"].astype(int), dd["ya"].astype(int))["f1"])


def test_report_resample_bleu_and_clinical_f1():
    pytest.importorskip("pycocoevalcap")
    from kgrag.eval import metrics as M

    refs = ["the heart is enlarged", "no pleural effusion", "small left pleural effusion", "the lungs are clear"]
    hyps = ["the heart is enlarged today", "no effusion", "left pleural effusion is small", "lungs are clear"]
    studies = [_study(f"q{i}", findings=r) for i, r in enumerate(refs)]
    ctx = _ctx(studies, {}, {f"d{i}": {} for i in range(4)})
    ctx.doc_text = lambda sid, target: hyps[int(sid[1:])]
    ctx.report_target = "report"
    ctx.tokens = {t: t for t in refs + hyps}
    ctx.present_of = lambda t: frozenset(w for w in ("enlarged", "effusion", "clear") if w in t)
    recs = {f"q{i}": {"evidence": [f"d{i}"], "answer": {"text": hyps[i]}} for i in range(4)}
    ev = T.ReportEval(M.CocoScorer(), meteor=False)
    d = ev.data(list(recs), recs, ctx)
    idx = np.array([0, 0, 2, 3])
    toolkit = M.CocoScorer().bleu([refs[i] for i in idx], [hyps[i] for i in idx])[3]
    assert ev.scalar(d, "retrieved_top1_bleu_4", idx) == pytest.approx(toolkit, abs=1e-6)
    # concept sets: refs {enlarged}, {effusion}, {effusion}, {clear}; hyps the same -> F1 1
    assert ev.scalar(d, "generated_clinical_f1", idx) == pytest.approx(1.0)
    assert ev.scalar(d, "generated_rouge_l", idx) == pytest.approx(np.mean(d["generated_rouge_l"][idx]))

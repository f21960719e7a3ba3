import pytest

from kgrag.generation.grounded import (
    ConceptEvidence,
    answer_question,
    combine,
    evidence_vote,
    write_report,
)


def test_evidence_vote_jeffreys():
    # 3 present, 1 absent: (3 + 0.5) / (4 + 1) = 0.7
    assert evidence_vote(ConceptEvidence(present=["a", "b", "c"], absent=["d"])) == pytest.approx(0.7)
    # nothing stated: no vote
    assert evidence_vote(ConceptEvidence()) is None


def test_combine_weights():
    # 0.7 * 0.9 + 0.3 * 0.2 = 0.63 + 0.06 = 0.69
    assert combine(0.9, 0.2, 0.7) == pytest.approx(0.69)
    assert combine(None, 0.2) == 0.2
    assert combine(0.4, None) == 0.4
    assert combine(None, None) is None


def test_answer_yes_cites_supporting_studies_and_paths():
    ev = ConceptEvidence(present=["s1", "s2"], absent=["s3"])
    paths = [{"nodes": ["lung_opacity", "consolidation", "pneumonia"], "strength": 0.56}]
    out = answer_question("pneumonia", p_causal=0.8, evidence=ev, paths=paths)
    # vote = 2.5 / 4 = 0.625 ; p = 0.7*0.8 + 0.3*0.625 = 0.56 + 0.1875 = 0.7475
    assert out["probability"] == pytest.approx(0.7475)
    assert out["yes_no"] == "yes"
    assert out["citations"] == ["s1", "s2"]
    assert "lung opacity → consolidation → pneumonia" in out["text"]
    assert "s3" in out["text"]  # the disagreeing study is named


def test_answer_no_and_unknown():
    out = answer_question("pneumothorax", p_causal=0.05, evidence=ConceptEvidence(absent=["s9"]))
    # vote = 0.5 / 2 = 0.25 ; p = 0.035 + 0.075 = 0.11
    assert out["yes_no"] == "no"
    assert out["probability"] == pytest.approx(0.11)
    assert out["citations"] == ["s9"]
    none = answer_question("scoliosis", p_causal=None, evidence=ConceptEvidence())
    assert none["yes_no"] is None and none["probability"] is None


def test_write_report_lists_findings_and_diagnoses():
    rep = write_report(
        [{"concept": "lung_opacity", "probability": 0.9}, {"concept": "pleural_line", "probability": 0.1}],
        [{"concept": "pneumonia", "probability": 0.7, "paths": [{"nodes": ["lung_opacity", "pneumonia"], "strength": 0.6}]}],
        evidence_ids=["s1"],
    )
    assert "lung opacity (p = 0.90)" in rep["text"]
    assert "No pleural line" in rep["text"]
    assert "Pneumonia likely (p = 0.70)" in rep["text"]
    assert rep["citations"] == ["s1"]

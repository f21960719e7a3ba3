"""The offline grounded writer (grounded.v2): reports, closed/open VQA, diagnosis."""

import re

import pytest
from _gen_bundles import EVIDENCE, POSTERIORS, bundle, closed, with_posterior

from kgrag.generation.base import CLOSED_VQA, DIAGNOSIS, OPEN_VQA, REPORT, cited
from kgrag.generation.evidence import ParsedQuestion, posteriors_from
from kgrag.generation.grounded import GroundedGenerator, belief, cite, combine, evidence_vote, p_yes

G = GroundedGenerator()


def test_vote_and_combine_by_hand():
    assert evidence_vote(3, 1) == pytest.approx(3.5 / 5)  # (3 + 0.5) / (4 + 1)
    assert evidence_vote(0, 0) is None
    assert combine(0.9, 0.2, 0.7) == pytest.approx(0.69)  # 0.63 + 0.06
    assert combine(None, 0.2) == 0.2 and combine(0.4, None) == 0.4 and combine(None, None) is None


def test_belief_counts_claims_and_unmentioned():
    b = belief(bundle(), "pleural_effusion")
    assert (b.present, b.absent, b.unmentioned) == (["s1", "s3"], ["s2"], [])
    # vote = (2 + 0.5) / (3 + 1) = 0.625 ; p = 0.7 * 0.8 + 0.3 * 0.625 = 0.7475
    assert b.p_causal == 0.8 and b.vote == pytest.approx(0.625) and b.p == pytest.approx(0.7475)
    # pneumothorax: s1, s2 deny it, s3 is silent (counts absent): vote = 0.5 / 4
    pt = belief(bundle(), "pneumothorax")
    assert pt.unmentioned == ["s3"] and pt.vote == pytest.approx(0.125)
    # copd: the graph has no path and V_I no value -> no causal opinion; nobody mentions it -> vote 0.5/4
    cb = belief(bundle(), "copd")
    assert cb.p_causal is None and cb.p == pytest.approx(0.125)


def _report(b=None):
    return G.generate(b or bundle(), REPORT)


def test_report_sentences_are_traceable_to_evidence_or_v_i():
    b = bundle()
    ans = _report(b)
    assert ans.task == REPORT and ans.generator["name"] == "grounded" and ans.generator["prompt_version"] == "grounded.v2"
    assert ans.sentences
    for s in ans.sentences:
        if s["source"] == "evidence":
            item = b.item(s["evidence_id"])
            assert s["source_text"] in [x.text for x in item.sentences]
            assert s["text"] == cite(s["source_text"], item.id)
        elif s["source"] == "image":
            assert "[V_I]" in s["text"]
            assert all(b.image_probability(c) is not None for c in s["concepts"])
        elif s["source"] == "graph":
            assert "[V_I]" in s["text"] and all(b.posteriors[c].paths for c in s["concepts"])
        else:
            assert s["source"] == "note" and s["cites"] and set(s["cites"]) <= set(b.evidence_ids)
        assert s["text"] in ans.text
    ok, bad = cited(ans.text, b)
    assert bad == [] and ok == ans.citations


def test_every_report_sentence_cites():
    ans = _report()
    body = re.sub(r"(FINDINGS|IMPRESSION): ", "", ans.text)
    sentences = [x for x in re.split(r"(?<=[.!?])\s+", body) if x]
    assert sentences and all(re.search(r"\[[^\]]+\]", x) for x in sentences), sentences


def test_report_findings_first_then_impression():
    ans = _report()
    assert ans.text.startswith("FINDINGS: ") and "IMPRESSION: " in ans.text
    sections = [s["section"] for s in ans.sentences]
    assert sections == sorted(sections, key=lambda x: {"findings": 0, "impression": 1}[x])
    imp = ans.text.split("IMPRESSION: ")[1]
    assert "Findings consistent with pneumonia [s1]." in imp  # the diagnosis is in the impression


def test_one_sentence_per_concept_and_no_unsupported_concept():
    ans = _report()
    concepts = [c for s in ans.sentences if s["source"] != "note" for c in s["concepts"]]
    assert len(concepts) == len(set(concepts))
    assert "copd" not in concepts and "chronic obstructive" not in ans.text.lower()  # posterior 0.95, no support
    # the hedged sentence "Possible pneumonia." is never used
    assert "Possible pneumonia" not in ans.text
    # lung opacity is in V_I (0.9) but no evidence sentence states it: written from V_I
    lo = [s for s in ans.sentences if "lung_opacity" in s["concepts"]]
    assert lo and lo[0]["source"] == "image" and "q = 0.90" in lo[0]["text"]


def test_contradiction_resolved_by_the_posterior_and_said_so():
    ans = _report()
    eff = [s for s in ans.sentences if "pleural_effusion" in s["concepts"]]
    assert eff[0]["source"] == "evidence" and eff[0]["source_text"] == "Small right pleural effusion."
    note = next(s for s in eff if s["source"] == "note")
    assert "Evidence disagrees on pleural effusion" in note["text"] and "[s2]" in note["text"]
    assert "P(pleural effusion | V_I) = 0.80 decides present" in note["text"]
    # lower the posterior: the same evidence now resolves to absent, with a denying sentence
    low = _report(with_posterior(bundle(), "pleural_effusion", 0.2))
    eff = [s for s in low.sentences if "pleural_effusion" in s["concepts"]]
    assert eff[0]["source_text"] in ("There is no pleural effusion.", "No pleural effusion or pneumothorax.")
    assert "decides absent" in next(s for s in eff if s["source"] == "note")["text"]
    assert "Small right pleural effusion" not in low.text and "Bilateral pleural effusions" not in low.text
    # cardiomegaly: s2 says enlarged, s3 normal; the posterior 0.3 picks s3's sentence
    assert "Heart size is normal [s3]." in ans.text and "The heart is enlarged" not in ans.text


def test_report_without_any_decision_support_says_so():
    b = bundle(v_i={}, evidence=(), posteriors={})
    ans = _report(b)
    assert ans.sentences == [] and ans.citations == [] and "No evidence sentence" in ans.text


def test_closed_answer_by_hand_and_polarity():
    b = bundle(closed("pleural_effusion"))
    ans = G.generate(b)
    assert ans.task == CLOSED_VQA and ans.concept == "pleural_effusion" and ans.polarity == "present"
    assert ans.yes_no == "yes" and ans.probability == pytest.approx(0.7475)
    assert ans.text.startswith("Yes: pleural effusion is likely present (P(yes) = 0.75).")
    assert '"Small right pleural effusion [s1]."' in ans.text and "Against" in ans.text  # s2 is quoted against
    neg = G.generate(bundle(closed("pleural_effusion", "absent", "Is pleural effusion absent?")))
    assert neg.yes_no == "no" and neg.probability == pytest.approx(1 - 0.7475) and neg.polarity == "absent"
    assert neg.to_dict()["probability"] == round(1 - 0.7475, 6)


@pytest.mark.parametrize("polarity", ["present", "absent"])
def test_answer_probability_monotone_in_the_posterior(polarity):
    base = bundle(closed("pleural_effusion", polarity))
    grid = [i / 20 for i in range(21)]
    ps = [G.generate(with_posterior(base, "pleural_effusion", x)).probability for x in grid]
    diffs = [b - a for a, b in zip(ps, ps[1:], strict=False)]
    if polarity == "present":
        assert all(d > 0 for d in diffs)
    else:
        assert all(d < 0 for d in diffs)
    assert all(p_yes(x, polarity) == pytest.approx(x if polarity == "present" else 1 - x) for x in grid)
    ys = [G.generate(with_posterior(base, "pleural_effusion", x)).yes_no for x in grid]
    assert ys == ["yes" if p >= 0.5 else "no" for p in ps]


def test_closed_answer_without_v_i_uses_the_evidence_vote():
    b = bundle(closed("pleural_effusion"), v_i={})
    ans = G.generate(b)
    assert ans.probability == pytest.approx(0.625) and "Causal posterior" not in ans.text


def test_closed_answer_about_an_unsupported_concept_is_null():
    b = bundle(closed("hiatal_hernia"), evidence=tuple(e for e in EVIDENCE if False))
    ans = G.generate(b)
    assert ans.yes_no is None and ans.probability is None and "no answer" in ans.text


def test_counterfactuals_equal_the_reference_model():
    from kgrag.causal import inference, scoring
    from kgrag.causal.network import CausalGraph

    edges = [{"src": "lung_opacity", "dst": "consolidation", "p": 0.8, "status": "accepted"},
             {"src": "consolidation", "dst": "pneumonia", "p": 0.5, "status": "accepted"}]
    graph = CausalGraph.from_edges(edges, default_leak=0.01)
    obs = {"lung_opacity": 0.9}
    targets = ["consolidation", "pneumonia"]
    probs = inference.posteriors(graph, obs, targets)
    # by hand, lung_opacity a soft root with q = 0.9, leaks 0.01:
    # P(consolidation) = 0.9 * (1 - 0.99 * 0.2) + 0.1 * 0.01 = 0.7228
    # P(pneumonia) = 0.7228 * (1 - 0.99 * 0.5) + 0.2772 * 0.01 = 0.367786
    assert probs["consolidation"] == pytest.approx(0.7228) and probs["pneumonia"] == pytest.approx(0.367786)
    (done,) = inference.interventions(graph, obs, [{"lung_opacity": 0}], targets)
    # do(lung_opacity = 0): P(consolidation) = 0.01; P(pneumonia) = 0.01 * 0.505 + 0.99 * 0.01 = 0.01495
    assert done["pneumonia"] == pytest.approx(0.01495)
    cf = {t: [{"do": {"lung_opacity": 0}, "probability": done[t]}] for t in targets}
    paths = scoring.paths(edges, obs, targets)
    posts = posteriors_from(probs, paths, cf)
    b = bundle(ParsedQuestion("Is there pneumonia?", "closed", ("pneumonia",)), posteriors=posts, v_i=obs)
    ans = G.generate(b)
    assert [c["probability"] for c in ans.counterfactuals] == [round(done["pneumonia"], 6)]
    assert ans.counterfactuals[0]["kind"] == "do"
    assert "do(lung opacity = absent)" in ans.text or "do(lung_opacity = absent)" in ans.text
    assert ans.paths[0]["nodes"] == ["lung_opacity", "consolidation", "pneumonia"]
    assert ans.paths[0]["strength"] == pytest.approx(0.36)


def test_diagnosis_answer():
    ans = G.generate(bundle(ParsedQuestion("What is the most likely diagnosis?", "diagnosis")))
    assert ans.task == DIAGNOSIS and ans.concept == "pneumonia" and ans.probability == pytest.approx(0.62)
    assert ans.text.startswith("Most likely diagnosis: pneumonia (P = 0.62 given the image findings).")
    assert ans.paths and ans.counterfactuals and ans.citations == ["s1"]
    assert "copd" not in ans.text.lower() and "chronic" not in ans.text.lower()  # no path: no opinion from the graph
    low = with_posterior(bundle(ParsedQuestion("What is the diagnosis?", "diagnosis")), "pneumonia", 0.3)
    assert G.generate(low).text.startswith("No diagnosis is likely; the most probable is pneumonia")


def test_location_answer_uses_the_evidence_words():
    ans = G.generate(bundle(ParsedQuestion("Where is the effusion?", "location", ("pleural_effusion",))))
    assert ans.task == OPEN_VQA and ans.intent == "location"
    # s1 (rank 1): "Small right ..." -> right (weight 1); s3 (rank 3): "Bilateral" (1/3)
    assert "right (1 of 2 reports that give a location) [s1]." in ans.text and "bilateral (1)" in ans.text
    sev = G.generate(bundle(ParsedQuestion("How large is the effusion?", "severity", ("pleural_effusion",))))
    assert "small" in sev.text and sev.citations == ["s1"]
    gone = G.generate(with_posterior(bundle(ParsedQuestion("Where is the effusion?", "location", ("pleural_effusion",))),
                                     "pleural_effusion", 0.1))
    assert "unlikely here" in gone.text


def test_findings_question_and_unparsed_question():
    f = G.generate(bundle(ParsedQuestion("What are the findings?", "findings")))
    assert f.task == OPEN_VQA and f.text.startswith("FINDINGS: ") and "IMPRESSION" not in f.text
    u = G.generate(bundle(ParsedQuestion("What colour is the sky?", "unparsed")))
    assert u.label == "unparsed" and "not understood" in u.text and u.citations
    assert len(u.sentences) <= 3


def test_bundle_json_round_trip_keeps_the_answer():
    b = bundle(closed("pleural_effusion"))
    from kgrag.generation.evidence import EvidenceBundle

    b2 = EvidenceBundle.from_dict(b.to_dict())
    assert b2 == b
    assert G.generate(b2).to_dict() == G.generate(b).to_dict()
    assert b.relevance() == pytest.approx([1.0, 0.5, 0.0])  # (0.9, 0.7, 0.5) min-max
    assert b.without(["s1"]).evidence_ids == ["s2", "s3"] and b.without(["s1"]).evidence[0].rank == 1
    assert POSTERIORS["copd"].paths == ()

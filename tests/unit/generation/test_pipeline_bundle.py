"""The query pipeline hands the generator an evidence bundle built from its state (fakes: no
model, FAISS or graph engine)."""

import pytest

from kgrag.causal import inference
from kgrag.causal.network import CausalGraph
from kgrag.generation.base import Answer
from kgrag.query.state import Query
from tests.unit.query.test_stages_pipeline import EDGES, _image, _pipeline


def test_bundle_from_the_state_and_the_grounded_answer(tmp_path):
    pipe = _pipeline()
    st = pipe.retrieve(pipe.state_for(Query(images=[_image(tmp_path)], question="Is there an opacity?", id="q7")))
    b = pipe.bundle(st)
    assert b.query.id == "q7" and b.question.intent == "closed" and b.question.concept == "lung_opacity"
    assert st.trace["question"]["concepts"] == ["lung_opacity"]  # ObserveFindings parsed the question
    assert [f.concept for f in b.image_findings] == ["lung_opacity", "nodule"] and b.observed == {"lung_opacity": 0.9, "nodule": 0.05}
    assert b.evidence_ids == [h.id for h in st.evidence] and [e.rank for e in b.evidence] == [1, 2]
    assert b.graph_version == "g-test" and b.index_version == "idx-1"
    s2, s1 = b.evidence  # the causal rerank puts s2 (pneumonia + consolidation present) first
    # the docstore's mentions become section-tagged sentences with their concepts; the study text rides along
    assert [(s.text, s.section, [m.concept for m in s.mentions]) for s in s2.sentences] == [
        ("Right lower lobe pneumonia.", "impression", ["pneumonia"]), ("Dense consolidation.", "findings", ["consolidation"]),
        ("A small nodule.", "findings", ["nodule"])]
    assert s2.text == {"findings": "Findings of s2."} and s1.sentences[0].mentions == ()
    # P(c | V_I), paths and counterfactuals equal the reference model's
    graph = CausalGraph.from_edges(EDGES, default_leak=0.01)
    probs = inference.posteriors(graph, b.observed, ["pneumonia", "consolidation"])
    assert b.posterior("pneumonia") == pytest.approx(probs["pneumonia"], abs=1e-12)
    assert b.posteriors["pneumonia"].paths[0].nodes == ("lung_opacity", "consolidation", "pneumonia")
    cfs = b.posteriors["pneumonia"].counterfactuals
    assert cfs and all(c.kind == "do" and c.setting for c in cfs)
    done = inference.interventions(graph, b.observed, [dict(c.setting) for c in cfs], ["pneumonia"])
    assert [c.probability for c in cfs] == pytest.approx([d["pneumonia"] for d in done], abs=1e-9)
    ans = pipe.answer(st)
    assert ans["generator"]["name"] == "grounded" and ans["concept"] == "lung_opacity" and ans["task"] == "closed_vqa"
    assert ans["yes_no"] == "yes" and 0.5 <= ans["probability"] <= 1.0
    assert st.trace["generation"]["generator"] == "grounded"


def test_the_chosen_generator_writes_the_answer(tmp_path):
    seen = []

    class Echo:
        name, model, prompt_version = "echo", None, "echo.v1"

        def warm_up(self):
            seen.append("warm")

        def generate(self, bundle, task=None):
            seen.append((task, bundle.question.intent if bundle.question else None))
            return Answer("echo", task=task, generator={"name": "echo", "model": None, "prompt_version": "echo.v1"})

        def close(self):
            seen.append("close")

    from kgrag.query.pipeline import QueryPipeline
    from tests.unit.query.test_stages_pipeline import (
        FakeDocstore,
        FakeExtractor,
        FakeIndex,
        FakeModel,
        FakeStore,
        _settings,
    )

    pipe = QueryPipeline(_settings(), FakeModel(), FakeIndex(), FakeStore(), FakeDocstore(), FakeExtractor(), Echo())
    res = pipe.run(Query(images=[_image(tmp_path)]))
    assert res["answer"]["text"] == "echo" and seen[:2] == ["warm", ("report", None)]
    pipe.close()
    assert seen[-1] == "close"

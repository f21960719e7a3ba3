"""V_I from the calibrated findings head and from findings text; the reward filter on by
default with the model's trained threshold; stage-1 weights per query form (fakes only)."""

from __future__ import annotations

import numpy as np
import pytest

from kgrag.model.fusion import FusionWeights
from kgrag.query import stages
from kgrag.query.state import Hit, Query, QueryState
from kgrag.types import Mention


class HeadModel:
    """The part of RetrievalModel that ObserveFindings reads: calibrated V_I of the visible concepts."""

    name = "head"
    excluded = {"emphysema": "val AUC 0.470 < 0.6: the head cannot see it"}

    def __init__(self, rows):
        self.rows = rows

    def findings_probs(self, images):
        return self.rows[: len(images)]


class Extractor:
    def __init__(self, mentions):
        self.mentions = mentions

    def extract(self, sid, text):
        return [Mention(sid, c, "", a, "findings", text, 0, 1) for c, a in self.mentions]


def _state(**q):
    images = q.pop("images", [])
    return QueryState(query=Query(**q), k=3, n=3, alpha=0.5, rerank="none", images=images)


def test_image_v_i_is_the_mean_calibrated_probability_of_every_visible_concept():
    rows = [{"consolidation": 0.6, "pleural_effusion": 0.02, "lung_opacity": 0.8},
            {"consolidation": 0.2, "pleural_effusion": 0.04, "lung_opacity": 0.6}]
    img = np.zeros((4, 4), np.float32)
    st = stages.ObserveFindings(HeadModel(rows), Extractor([])).run(_state(images=[img, img]))
    assert st.observed == pytest.approx({"consolidation": 0.4, "pleural_effusion": 0.03, "lung_opacity": 0.7})
    assert [f["concept"] for f in st.image_findings] == ["lung_opacity", "consolidation", "pleural_effusion"]
    assert st.trace["observe"]["image"]["not_visible"] == HeadModel.excluded


def test_findings_text_observes_present_one_and_absent_zero_but_no_diagnosis_or_hedge():
    ext = Extractor([("consolidation", "present"), ("pleural_effusion", "absent"), ("pneumothorax", "absent"),
                     ("pneumothorax", "present"), ("edema", "uncertain"), ("pneumonia", "present")])
    rows = [{"pleural_effusion": 0.7, "edema": 0.4}]
    st = stages.ObserveFindings(HeadModel(rows), ext).run(
        _state(findings="...", images=[np.zeros((4, 4), np.float32)]))
    # text overrides the image (effusion 0.7 → 0); present wins over absent (pneumothorax);
    # the hedged edema keeps the image's 0.4; pneumonia is a diagnosis: inferred, not observed
    assert st.observed == {"consolidation": 1.0, "pleural_effusion": 0.0, "pneumothorax": 1.0, "edema": 0.4}
    t = st.trace["observe"]["text"]
    assert t == {"present": ["consolidation", "pneumothorax"], "absent": ["pleural_effusion"],
                 "diagnoses_not_observed": ["pneumonia"]}


def test_a_question_names_the_subject_and_observes_nothing():
    st = stages.ObserveFindings(HeadModel([]), Extractor([("pleural_effusion", "present")])).run(
        _state(question="Is there pleural effusion?"))
    assert st.observed == {} and st.question_concepts == ["pleural_effusion"]


class RewardModel:
    name = "rm"
    reward_model = object()

    def __init__(self, rewards, thresholds):
        self.rewards, self.thresholds, self.asked = np.asarray(rewards, np.float32), thresholds, []

    def reward_threshold_for(self, kind):
        self.asked.append(kind)
        return self.thresholds.get(kind)

    def reward(self, q, d):
        return self.rewards[: len(d)]


class Index:
    def vectors(self, space, ids):
        return np.zeros((len(ids), 2), np.float32)


def _ranked(image: bool, findings: bool = True):
    st = _state(question="x", findings="y" if findings else None)
    st.q_image = np.array([1.0, 0.0], np.float32) if image else None
    st.q_text = None if image else np.array([0.0, 1.0], np.float32)
    st.candidates = [Hit(f"s{i}", {"fused": 1.0 - i / 10}) for i in range(4)]
    return st


def test_reward_filter_uses_the_trained_threshold_of_the_query_kind_by_default():
    model = RewardModel([0.9, 0.1, 0.5, 0.3], {"image": 0.4, "text": 0.2})
    st = stages.RewardFilter(model, Index()).run(_ranked(image=True))
    assert [h.id for h in st.candidates] == ["s0", "s2"] and model.asked == ["image"]
    assert st.trace["reward_filter"] == {"threshold": pytest.approx(0.4), "source": "model (image queries)",
                                         "kind": "image", "dropped": 2}
    st = stages.RewardFilter(model, Index()).run(_ranked(image=False))
    assert [h.id for h in st.candidates] == ["s0", "s2", "s3"] and model.asked[-1] == "text"
    assert st.candidates[1].reward == pytest.approx(0.5)


def test_reward_filter_setting_overrides_or_switches_it_off():
    model = RewardModel([0.9, 0.1, 0.5, 0.3], {"image": 0.4})
    st = stages.RewardFilter(model, Index(), threshold=0.95).run(_ranked(image=True))
    assert [h.id for h in st.candidates] == ["s0"]  # all below: the best-ranked one stays
    assert st.trace["reward_filter"]["source"] == "setting retrieval.reward_threshold"
    st = stages.RewardFilter(model, Index(), enabled=False).run(_ranked(image=True))
    assert len(st.candidates) == 4 and "switched off" in st.trace["reward_filter"]["off"]
    st = stages.RewardFilter(model, Index()).run(_ranked(image=False))  # no trained text threshold
    assert len(st.candidates) == 4 and "no trained threshold for text" in st.trace["reward_filter"]["off"]
    model = RewardModel([0.9, 0.1, 0.5, 0.3], {"image": 0.4, "text": 0.2, "question": 0.6})
    st = stages.RewardFilter(model, Index()).run(_ranked(image=False, findings=False))  # a question alone
    assert [h.id for h in st.candidates] == ["s0"] and st.trace["reward_filter"]["kind"] == "question"


def test_reward_filter_is_on_by_default_in_the_settings():
    from kgrag.config import load_settings

    rs = load_settings().retrieval
    assert rs.reward_filter is True and rs.reward_threshold is None  # on, with the model's own threshold


class FormIndex:
    modalities = {"a": "radiology", "b": "radiology"}
    V = {"a": np.array([1.0, 0.0], np.float32), "b": np.array([0.0, 1.0], np.float32)}

    def search(self, space, q, k):
        return [["a", "b"]], np.zeros((1, 2))

    def vectors(self, space, ids):
        return np.stack([self.V[i] for i in ids])

    def has(self, space, sid):
        return True


def test_stage1_uses_the_weights_of_the_query_form():
    # image+question: the question is weighed at γ = 0 (fitted so), so b's text match cannot win
    w = FusionWeights(0.2, 0.2, 0.6, {"image+question": (0.5, 0.5, 0.0), "image+findings": (0.1, 0.1, 0.8)})
    st = _state(question="Is there an effusion?")
    st.modality, st.q_image, st.q_text = "radiology", np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    st = stages.Stage1Cases(FormIndex(), w).run(st)
    assert st.trace["stage1"]["form"] == "image+question" and st.trace["stage1"]["weights"] == (0.5, 0.5, 0.0)
    assert [h.id for h in st.candidates] == ["a", "b"]
    st = _state(findings="Small effusion.")
    st.modality, st.q_image, st.q_text = "radiology", np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    st = stages.Stage1Cases(FormIndex(), w).run(st)
    assert st.trace["stage1"]["form"] == "image+findings" and [h.id for h in st.candidates] == ["b", "a"]

"""Assertion of concept mentions on hand-written sentences in real report phrasing."""

import pytest

from kgrag.ingest.extract import RuleExtractor, study_level

CASES = [
    # negation, including lists
    ("No pleural effusion.", {"pleural_effusion": "absent"}),
    ("No pleural effusion or pneumothorax.", {"pleural_effusion": "absent", "pneumothorax": "absent"}),
    ("No focal consolidation, pleural effusion, or pneumothorax.", {"consolidation": "absent", "pleural_effusion": "absent", "pneumothorax": "absent"}),
    ("There is no pneumothorax.", {"pneumothorax": "absent"}),
    ("Lungs are clear without consolidation or edema.", {"consolidation": "absent", "edema": "absent", "lung_opacity": "absent"}),
    ("Free of effusion.", {"pleural_effusion": "absent"}),
    ("No evidence of pneumonia.", {"pneumonia": "absent"}),
    ("Negative for pneumothorax.", {"pneumothorax": "absent"}),
    ("The lungs are clear.", {"lung_opacity": "absent"}),
    ("Heart size is normal.", {"cardiomegaly": "absent"}),
    ("Normal heart size.", {"cardiomegaly": "absent"}),
    ("Normal cardiomediastinal silhouette.", {"enlarged_cardiomediastinum": "absent"}),
    ("The costophrenic angles are sharp.", {"costophrenic_blunting": "absent"}),
    ("No acute fracture.", {"fracture": "absent"}),
    ("No pulmonary nodules or masses.", {"nodule": "absent", "mass": "absent"}),
    ("Previously seen pneumothorax has resolved.", {"pneumothorax": "absent"}),
    # present
    ("Cardiomegaly.", {"cardiomegaly": "present"}),
    ("The heart is enlarged.", {"cardiomegaly": "present"}),
    ("Small left pleural effusion.", {"pleural_effusion": "present"}),
    ("Bilateral pleural effusions.", {"pleural_effusion": "present"}),
    ("Focal consolidation in the right lower lobe.", {"consolidation": "present"}),
    ("There is a right apical pneumothorax.", {"pneumothorax": "present"}),
    ("Calcified granuloma in the left upper lobe.", {"granuloma": "present"}),
    ("Mild pulmonary edema.", {"edema": "present"}),
    ("Hyperexpanded lungs with flattened diaphragms.", {"hyperinflation": "present"}),
    ("Emphysematous changes.", {"emphysema": "present"}),
    ("Blunting of the left costophrenic angle.", {"costophrenic_blunting": "present"}),
    ("Endotracheal tube in place.", {"support_devices": "present"}),
    ("Old healed rib fracture.", {"fracture": "present"}),
    ("Mild thoracic scoliosis.", {"scoliosis": "present"}),
    ("Findings consistent with congestive heart failure.", {"heart_failure": "present"}),
    # uncertainty, hedges, hypotheticals, history
    ("Cannot exclude early pneumonia.", {"pneumonia": "uncertain"}),
    ("Pneumonia cannot be excluded.", {"pneumonia": "uncertain"}),
    ("Possible small pleural effusion.", {"pleural_effusion": "uncertain"}),
    ("Findings may represent atelectasis.", {"atelectasis": "uncertain"}),
    ("Likely bibasilar atelectasis.", {"atelectasis": "uncertain"}),
    ("Question of a small pneumothorax.", {"pneumothorax": "uncertain"}),
    ("Evaluate for pneumonia.", {"pneumonia": "uncertain"}),
    ("Rule out pneumothorax.", {"pneumothorax": "uncertain"}),
    ("Atelectasis versus consolidation in the left base.", {"atelectasis": "uncertain", "consolidation": "uncertain"}),
    ("History of pneumothorax.", {"pneumothorax": "uncertain"}),
    ("Opacity concerning for pneumonia.", {"pneumonia": "uncertain"}),
    ("Mediastinal calcifications suggest a previous granulomatous process.", {"granuloma": "uncertain"}),
    ("Bibasilar airspace disease, possibly atelectasis.", {"airspace_disease": "present", "atelectasis": "uncertain"}),
    ("Lingular opacity, presumably scarring.", {"lung_opacity": "present"}),
    ("It would be difficult to completely exclude a superimposed pneumonia.", {"pneumonia": "uncertain"}),
    # "versus" hedges only its neighbours, not the finding it interprets
    ("Mild streaky opacity in the right lung, atelectasis versus scarring.", {"lung_opacity": "present", "atelectasis": "uncertain"}),
    ("Consolidation in the left lower lobe has cleared.", {"consolidation": "absent"}),
    # one phrase, two concepts; nodular densities are opacities (as MeSH indexes them)
    ("Increased interstitial opacities.", {"interstitial_markings": "present", "lung_opacity": "present"}),
    ("Nodular density in the right midlung.", {"lung_opacity": "present"}),
    ("Biapical fibronodular scarring.", {"nodule": "present"}),
    # "prior" describes an old finding still visible, not a historical one
    ("Stable prior right rib fractures.", {"fracture": "present"}),
    ("Prior pneumothorax has resolved.", {"pneumothorax": "absent"}),
    ("Interval resolution of prior pneumonia.", {"pneumonia": "absent"}),
    # an organ-system heading before the negation ("Pleura: No effusion.")
    ("Pleura: No effusion.", {"pleural_effusion": "absent"}),
    ("Lungs: No focal consolidation, but there is mild atelectasis.", {"consolidation": "absent", "atelectasis": "present"}),
    ("Effusion: no.", {"pleural_effusion": "absent"}),
    ("Pleural spaces: Small left effusion.", {"pleural_effusion": "present"}),
]


@pytest.fixture(scope="module")
def extractor():
    x = RuleExtractor()
    x.warm_up()
    return x


def test_there_are_at_least_40_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("text,expected", CASES, ids=[c[0][:40] for c in CASES])
def test_assertion(extractor, text, expected):
    got = study_level(extractor.extract("s", text))
    for concept, assertion in expected.items():
        assert got.get(concept) == assertion, f"{text!r}: {concept} -> {got.get(concept)} (all: {got})"


def test_offsets_point_into_the_full_text(extractor):
    text = "INDICATION: cough\n\nFINDINGS: No pleural effusion. Focal consolidation.\n\nIMPRESSION: Pneumonia."
    ms = extractor.extract("s", text)
    for m in ms:
        assert text[m.start:m.end].lower() == m.text.lower()
        assert m.role in ("ImageFinding", "Finding", "Diagnosis")
        assert m.extractor == "rules" and m.extractor_version
    secs = {m.concept: m.section for m in ms}
    assert secs["pleural_effusion"] == "findings" and secs["pneumonia"] == "impression"


def test_study_level_precedence():
    from kgrag.types import Mention

    def m(a):
        return Mention("s", "pneumonia", "Diagnosis", a, "findings", "", 0, 1)

    assert study_level([m("absent"), m("uncertain")]) == {"pneumonia": "uncertain"}
    assert study_level([m("absent"), m("present"), m("uncertain")]) == {"pneumonia": "present"}

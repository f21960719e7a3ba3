"""Question parsing: a phrasing table with each question's intent, concept and polarity."""

import pytest

from kgrag.generation.questions import (
    QuestionParser,
    attribute_words,
    laterality,
    normalize,
    rewrites,
)

# (question, intent, first concept, polarity: "yes" means present / absent)
TABLE = [
    ("Is there pleural effusion?", "closed", "pleural_effusion", "present"),
    ("Is there a pleural effusion?", "closed", "pleural_effusion", "present"),
    ("Is there no pleural effusion?", "closed", "pleural_effusion", "absent"),
    ("Is pleural effusion absent?", "closed", "pleural_effusion", "absent"),
    ("Is pleural effusion present?", "closed", "pleural_effusion", "present"),
    ("Without pleural effusion?", "closed", "pleural_effusion", "absent"),
    ("Has the effusion resolved?", "closed", "pleural_effusion", "absent"),
    ("Is there fluid in the pleural space?", "closed", "pleural_effusion", "present"),
    ("Does the image show cardiomegaly?", "closed", "cardiomegaly", "present"),
    ("Does the image show an enlarged heart?", "closed", "cardiomegaly", "present"),
    ("Is the heart enlarged?", "closed", "cardiomegaly", "present"),
    ("Does the heart look enlarged?", "closed", "cardiomegaly", "present"),
    ("Is the heart size normal?", "closed", "cardiomegaly", "absent"),
    ("Is the heart normal in size?", "closed", "cardiomegaly", "absent"),
    ("Any sign of pneumothorax?", "closed", "pneumothorax", "present"),
    ("Any signs of pneumothorax?", "closed", "pneumothorax", "present"),
    ("Is pneumothorax ruled out?", "closed", "pneumothorax", "absent"),
    ("Is there no evidence of pneumothorax?", "closed", "pneumothorax", "absent"),
    ("Is pneumothorax not present?", "closed", "pneumothorax", "absent"),
    ("Is there a collapsed lung?", "closed", "pneumothorax", "present"),
    ("Are the lungs clear?", "closed", "lung_opacity", "absent"),
    ("Is there a lung opacity?", "closed", "lung_opacity", "present"),
    ("Is there infiltrate?", "closed", "lung_opacity", "present"),
    ("Is there evidence of pneumonia?", "closed", "pneumonia", "present"),
    ("Can pneumonia be excluded?", "closed", "pneumonia", "absent"),
    ("Is there a lung infection?", "closed", "pneumonia", "present"),
    ("Is pneumonia the most likely diagnosis?", "closed", "pneumonia", "present"),
    ("Are there signs of heart failure?", "closed", "heart_failure", "present"),
    ("Is there CHF?", "closed", "heart_failure", "present"),
    ("Is there consolidation?", "closed", "consolidation", "present"),
    ("Is there any consolidation or effusion?", "closed", "consolidation", "present"),
    ("Is there pulmonary edema?", "closed", "edema", "present"),
    ("Is there a pulmonary nodule?", "closed", "nodule", "present"),
    ("Is there emphysema?", "closed", "emphysema", "present"),
    ("Is the mediastinum widened?", "closed", "enlarged_cardiomediastinum", "present"),
    ("Is the cardiomediastinal silhouette enlarged?", "closed", "enlarged_cardiomediastinum", "present"),
    ("Are the costophrenic angles sharp?", "closed", "costophrenic_blunting", "absent"),
    ("Is there a rib fracture?", "closed", "fracture", "present"),
    ("Is there an endotracheal tube?", "closed", "support_devices", "present"),
    ("Is there atelectasis?", "closed", "atelectasis", "present"),
    ("Is there volume loss?", "closed", "atelectasis", "present"),
    ("Is there a hiatal hernia?", "closed", "hiatal_hernia", "present"),
    ("Is there scoliosis?", "closed", "scoliosis", "present"),
    ("Is there a mass?", "closed", "mass", "present"),
    ("Are the lungs hyperinflated?", "closed", "hyperinflation", "present"),
    ("Is the chest x-ray normal?", "closed", "no_finding", "present"),
    ("Is there any abnormality?", "closed", "no_finding", "absent"),
    ("In this image, is there a pneumothorax?", "closed", "pneumothorax", "present"),
    ("Where is the effusion?", "location", "pleural_effusion", "present"),
    ("Which side is the pneumothorax on?", "location", "pneumothorax", "present"),
    ("Where is the consolidation located?", "location", "consolidation", "present"),
    ("How large is the effusion?", "severity", "pleural_effusion", "present"),
    ("How severe is the edema?", "severity", "edema", "present"),
    ("What is the most likely diagnosis?", "diagnosis", None, "present"),
    ("What is the diagnosis?", "diagnosis", None, "present"),
    ("What are the findings?", "findings", None, "present"),
    ("Describe the image.", "findings", None, "present"),
    ("What does the chest x-ray show?", "findings", None, "present"),
    ("Write a report.", "findings", None, "present"),
    ("What color is the sky?", "unparsed", None, "present"),
]


@pytest.fixture(scope="module")
def parser():
    return QuestionParser()


def test_the_table_is_large_enough():
    assert len(TABLE) >= 40 and len({q for q, *_ in TABLE}) == len(TABLE)


@pytest.mark.parametrize(("question", "intent", "concept", "polarity"), TABLE)
def test_phrasing(parser, question, intent, concept, polarity):
    p = parser.parse(question)
    assert (p.intent, p.concept, p.polarity) == (intent, concept, polarity)
    assert p.text == question


def test_several_concepts_keep_their_order(parser):
    assert parser.parse("Is there any consolidation or effusion?").concepts == ("consolidation", "pleural_effusion")


def test_no_question():
    assert QuestionParser().parse(None) is None and QuestionParser().parse("  ") is None


def test_normalize_and_rewrites():
    assert normalize("  Please, Is the HEART enlarged?? ") == "is the heart enlarged"
    assert "the lungs are clear" in rewrites("are the lungs clear")
    assert "the heart is enlarged" in rewrites("does the heart look enlarged")


def test_attribute_words():
    assert attribute_words("Focal consolidation in the right lower lobe.", "location") == "right lower lobe"
    assert attribute_words("Small right pleural effusion.", "location") == "right"
    assert attribute_words("There is a moderate left pleural effusion.", "severity") == "moderate"
    assert attribute_words("No pleural effusion.", "location") is None
    assert laterality("right lower lobe") == "right" and laterality("bilateral") == "bilateral"
    assert laterality("left base and right base") == "bilateral" and laterality(None) is None


def test_every_synth_question_in_both_styles(parser):
    """The questions kgrag synth writes (style a and the held-out style b) parse to their concept."""
    from kgrag.synth.generate import QUESTION_TEMPLATES, QUESTION_TEMPLATES_B

    for templates in (QUESTION_TEMPLATES, QUESTION_TEMPLATES_B):
        for concept, q in templates.items():
            p = parser.parse(q)
            assert (p.intent, p.concept, p.polarity) == ("closed", concept, "present"), q

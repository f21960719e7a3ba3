"""Style a report text: varied ordinary radiology phrasing, with negations and hedges,
one findings paragraph and a short impression."""

from __future__ import annotations

import numpy as np

# (present phrasings, negative phrasings); {zone} / {side} are filled in
PHRASES: dict[str, tuple[list[str], list[str]]] = {
    "lung_opacity": (["There is an opacity in the {zone}.", "Patchy opacity is seen in the {zone}.", "Increased opacity at the {zone}."],
                     ["No focal opacity.", "The lungs are clear without opacity."]),
    "consolidation": (["Focal consolidation in the {zone}.", "There is consolidation of the {zone}.", "Dense consolidation is present in the {zone}."],
                      ["No focal consolidation.", "There is no consolidation."]),
    "airspace_disease": (["Airspace disease in the {zone}.", "Findings of airspace disease at the {zone}."],
                         ["No airspace disease."]),
    "atelectasis": (["Subsegmental atelectasis at the {zone}.", "Mild bibasilar atelectasis.", "Linear atelectasis in the {zone}."],
                    ["No atelectasis."]),
    "pleural_effusion": (["Small {side} pleural effusion.", "There is a moderate {side} pleural effusion.", "Bilateral pleural effusions."],
                         ["No pleural effusion.", "There is no pleural effusion."]),
    "cardiomegaly": (["The heart is enlarged.", "Cardiomegaly.", "Moderate cardiomegaly is present."],
                     ["Heart size is normal.", "No cardiomegaly."]),
    "edema": (["Mild pulmonary edema.", "Findings consistent with interstitial edema.", "There is pulmonary edema."],
              ["No pulmonary edema.", "No edema."]),
    "vascular_congestion": (["Pulmonary vascular congestion.", "Mild vascular congestion is noted."],
                            ["No vascular congestion."]),
    "emphysema": (["Emphysematous changes.", "Changes of emphysema."],
                  ["No emphysema."]),
    "lung_lesion": (["A lung lesion is present in the {zone}.", "Pulmonary lesion at the {zone}."],
                    ["No lung lesion."]),
    "pneumothorax": (["Small {side} pneumothorax.", "There is a {side} apical pneumothorax."],
                     ["No pneumothorax.", "There is no pneumothorax."]),
    "pleural_other": (["Pleural thickening on the {side}."], ["No pleural thickening."]),
    "enlarged_cardiomediastinum": (["The cardiomediastinal silhouette is enlarged.", "Widened cardiomediastinal silhouette."],
                                   ["The cardiomediastinal silhouette is normal.", "Normal cardiomediastinal silhouette."]),
    "costophrenic_blunting": (["Blunting of the {side} costophrenic angle.", "The {side} costophrenic angle is blunted."],
                              ["The costophrenic angles are sharp."]),
    "interstitial_markings": (["Increased interstitial markings.", "Prominent interstitial markings bilaterally."],
                              ["No increased interstitial markings."]),
    "pleural_line": (["A visceral pleural line is seen at the {side} apex."], []),
    "hyperinflation": (["The lungs are hyperinflated.", "Hyperexpanded lungs with flattened diaphragms."],
                       ["No hyperinflation."]),
    "nodule": (["A small nodule in the {zone}.", "There is a {size} pulmonary nodule in the {zone}."],
               ["No pulmonary nodules."]),
    "mass": (["A mass is present in the {zone}.", "There is a large mass at the {zone}."], ["No mass."]),
    "support_devices": (["Endotracheal tube in place.", "Right internal jugular central venous catheter in place.", "Nasogastric tube is present."],
                        []),
    "fracture": (["Old healed rib fracture.", "There is a fracture of the {side} posterior rib."], ["No acute fracture."]),
    "scoliosis": (["Mild thoracic scoliosis.", "Scoliosis of the thoracic spine."], []),
    "hiatal_hernia": (["Small hiatal hernia.", "There is a hiatal hernia."], []),
}
HEDGES = {
    "pneumonia": ["Cannot exclude early pneumonia.", "Possible pneumonia."],
    "pleural_effusion": ["Possible small pleural effusion."],
    "atelectasis": ["Possible atelectasis."],
    "consolidation": ["Questionable consolidation."],
}
IMPRESSION = {
    "pneumonia": ["Findings consistent with pneumonia.", "Pneumonia in the {zone}.", "{Zone} pneumonia."],
    "heart_failure": ["Congestive heart failure.", "Findings consistent with congestive heart failure.", "CHF."],
    "copd": ["COPD.", "Chronic obstructive pulmonary disease."],
    "granuloma": ["Calcified granuloma.", "Granulomatous disease."],
}
NORMAL_IMPRESSION = ["No acute cardiopulmonary abnormality.", "No acute cardiopulmonary disease.", "Normal chest."]
ROUTINE_NEGATIVES = ["pneumothorax", "pleural_effusion", "consolidation", "cardiomegaly", "edema"]


def _fill(t: str, rng: np.random.Generator, zone: str) -> str:
    side = str(rng.choice(["right", "left"]))
    size = str(rng.choice(["small", "5 mm", "subcentimeter"]))
    return t.format(zone=zone, Zone=zone.capitalize(), side=side, size=size)


def _state(stated: dict[str, str], concept: str, assertion: str) -> None:
    rank = {"present": 2, "uncertain": 1, "absent": 0}
    if concept not in stated or rank[assertion] > rank[stated[concept]]:
        stated[concept] = assertion


def write_report(state: dict[str, int], site: str, zone: str, rng: np.random.Generator,
                 *, p_omit: float = 0.08, p_hedge: float = 0.08) -> tuple[str, str]:
    """(findings, impression) for one study."""
    findings, impression, _ = write_report_stated(state, site, zone, rng, p_omit=p_omit, p_hedge=p_hedge)
    return findings, impression


def write_report_stated(state: dict[str, int], site: str, zone: str, rng: np.random.Generator,
                        *, p_omit: float = 0.08, p_hedge: float = 0.08) -> tuple[str, str, dict[str, str]]:
    """(findings, impression, stated): ``stated`` maps each concept the text states to the
    assertion it was written with (present / absent / uncertain), for scoring an extractor."""
    stated: dict[str, str] = {}
    sentences: list[str] = []
    if site == "B":
        sentences.append("PORTABLE AP VIEW.")
    present = [c for c, v in state.items() if v and c in PHRASES]
    for c in present:
        if rng.random() < p_omit:
            continue  # report noise: a true finding goes unmentioned
        if c in HEDGES and rng.random() < p_hedge:
            sentences.append(str(rng.choice(HEDGES[c])))
            _state(stated, c, "uncertain")
        else:
            sentences.append(_fill(str(rng.choice(PHRASES[c][0])), rng, zone))
            _state(stated, c, "present")
    absent = [c for c, v in state.items() if not v and c in PHRASES and PHRASES[c][1]]
    rng.shuffle(absent)
    k = int(rng.integers(2, 5))
    neg = [c for c in ROUTINE_NEGATIVES if c in absent][: max(1, k - 1)]
    neg += [c for c in absent if c not in neg][: max(0, k - len(neg))]
    if "pneumothorax" in neg and "pleural_effusion" in neg and rng.random() < 0.5:
        neg = [c for c in neg if c not in ("pneumothorax", "pleural_effusion")]
        sentences.append("No pleural effusion or pneumothorax.")
        _state(stated, "pleural_effusion", "absent")
        _state(stated, "pneumothorax", "absent")
    for c in neg:
        sentences.append(str(rng.choice(PHRASES[c][1])))
        _state(stated, c, "absent")
    body = sentences[1:] if site == "B" else sentences
    rng.shuffle(body)
    findings = " ".join(([sentences[0]] if site == "B" else []) + body)
    imp = []
    for d in ("pneumonia", "heart_failure", "copd", "granuloma"):
        if state.get(d):
            if d in HEDGES and rng.random() < p_hedge:
                imp.append(str(rng.choice(HEDGES[d])))
                _state(stated, d, "uncertain")
            else:
                imp.append(_fill(str(rng.choice(IMPRESSION[d])), rng, zone))
                _state(stated, d, "present")
    if not imp:
        imp.append(str(rng.choice(NORMAL_IMPRESSION)) if not present or rng.random() < 0.5 else "No acute process.")
    return findings, " ".join(imp), stated


def template_sentences() -> list[str]:
    """Every style a sentence template (for vocabulary comparisons with style b)."""
    out = [t for pos, neg in PHRASES.values() for t in pos + neg] + [t for ts in HEDGES.values() for t in ts]
    out += [t for ts in IMPRESSION.values() for t in ts] + NORMAL_IMPRESSION
    return out + ["PORTABLE AP VIEW.", "No pleural effusion or pneumothorax.", "No acute process."]

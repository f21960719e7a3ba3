"""Style b report text: plain clinical phrasing organised by organ system.

Written independently of style a (:mod:`kgrag.synth.reports`) and never used to
tune kgrag's lexicon: it is the held-out phrasing of the generalisation check
(``kgrag synth --style b``).  It differs from style a in what real reports vary
in: templates and vocabulary (synonyms a radiologist writes, such as "volume
loss", "Kerley B lines", "pleural spaces are clear"), locations ("right basilar",
"left retrocardiac"), a fixed reading order (lines and tubes, lungs, pleura,
heart and mediastinum, bones), often under organ-system headings, an indication
and a comparison, a technique sentence that names the acquisition (the site),
and an impression that is numbered, restates key findings and hedges.

Some of these phrasings are outside kgrag's lexicon on purpose; how many the
extractor reads correctly is measured (``benchmarks/bench_synth_extraction.py``),
not tuned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: where a focal finding sits: (fraction of lung height from the apex, side (-1 = patient's
#: right = image left), fraction of the lung half-width from medial (0) to lateral (1)),
#: adjective form, noun form
LOCATIONS: dict[str, tuple[float, int, float, str, str]] = {
    "rll": (0.74, -1, 0.55, "right lower lobe", "the right lower lobe"),
    "rbase": (0.84, -1, 0.45, "right basilar", "the right lung base"),
    "rul": (0.26, -1, 0.50, "right upper lobe", "the right upper lobe"),
    "rhilar": (0.48, -1, 0.20, "right perihilar", "the right perihilar region"),
    "lll": (0.76, 1, 0.55, "left lower lobe", "the left lower lobe"),
    "lretro": (0.72, 1, 0.10, "left retrocardiac", "the left retrocardiac region"),
    "lul": (0.28, 1, 0.50, "left upper lobe", "the left upper lobe"),
    "lmid": (0.50, 1, 0.60, "left midlung", "the left midlung zone"),
}

#: organ systems in reading order: heading, concepts described under it
SYSTEMS: list[tuple[str, tuple[str, ...]]] = [
    ("Lines and tubes", ("support_devices",)),
    ("Lungs", ("consolidation", "lung_opacity", "airspace_disease", "atelectasis", "edema", "vascular_congestion",
               "interstitial_markings", "emphysema", "hyperinflation", "nodule", "mass", "lung_lesion")),
    ("Pleura", ("pleural_effusion", "costophrenic_blunting", "pneumothorax", "pleural_line", "pleural_other")),
    ("Heart and mediastinum", ("cardiomegaly", "enlarged_cardiomediastinum", "hiatal_hernia")),
    ("Bones", ("fracture", "scoliosis")),
]

# Placeholders: {loc}/{Loc} adjective location, {in_loc} noun location, {side}/{Side},
# {size}/{Size}, {mm}, {cm}, {rib}.
PRESENT: dict[str, list[str]] = {
    "lung_opacity": ["{Loc} airspace opacity.", "Hazy opacification of {in_loc}.", "Ill-defined {loc} opacity.",
                     "Increased density projecting over {in_loc}."],
    "consolidation": ["There is a {loc} consolidation.", "{Loc} consolidation with air bronchograms.",
                      "Dense airspace consolidation involving {in_loc}."],
    "airspace_disease": ["Patchy {loc} airspace disease.", "Airspace process in {in_loc}."],
    "atelectasis": ["Plate-like atelectasis in {in_loc}.", "Minor {loc} atelectasis.", "Volume loss in {in_loc}."],
    "pleural_effusion": ["{Size} {side}-sided pleural effusion.", "Layering {side} pleural fluid.", "Trace {side} effusion."],
    "cardiomegaly": ["The heart is mildly enlarged.", "The cardiac silhouette is enlarged.", "Enlarged cardiac silhouette.",
                     "Cardiac size is increased."],
    "edema": ["Mild interstitial pulmonary edema.", "Perihilar alveolar edema.", "Diffuse interstitial pulmonary edema."],
    "vascular_congestion": ["Cephalization of the pulmonary vessels.", "Engorged pulmonary vasculature.",
                            "Pulmonary venous hypertension."],
    "emphysema": ["Centrilobular emphysema.", "Bullous emphysematous change in the upper lobes.",
                  "Upper lobe predominant emphysema."],
    "lung_lesion": ["Indeterminate {loc} lesion.", "Focal lesion in {in_loc}."],
    "pneumothorax": ["A {side} apical pneumothorax is seen.", "{Side}-sided pneumothorax, approximately {cm} cm at the apex.",
                     "Tiny {side} apical pneumothorax."],
    "pleural_other": ["Calcified pleural plaques.", "{Side} apical pleural thickening."],
    "enlarged_cardiomediastinum": ["The mediastinum is widened.", "Prominent mediastinal contours.",
                                   "Widening of the superior mediastinum."],
    "costophrenic_blunting": ["{Side} costophrenic angle blunting.", "Blunting of the {side} costophrenic sulcus.",
                              "The {side} costophrenic angle is obscured."],
    "interstitial_markings": ["Kerley B lines at the lung bases.", "Coarsened interstitial markings.",
                              "Reticular opacities at the bases."],
    "pleural_line": ["Thin {side} apical pleural line.", "A pleural edge is visible at the {side} apex."],
    "hyperinflation": ["Hyperexpansion of the lungs.", "Increased lung volumes with flattening of the hemidiaphragms.",
                       "Large lung volumes."],
    "nodule": ["{Mm} mm {loc} pulmonary nodule.", "Rounded nodular density in {in_loc}.",
               "Solitary nodule projecting over {in_loc}."],
    "mass": ["{Cm} cm {loc} mass.", "Large lobulated mass in {in_loc}."],
    "support_devices": ["Endotracheal tube terminates 4 cm above the carina.", "Right-sided PICC with tip in the distal SVC.",
                        "Enteric tube courses below the diaphragm.",
                        "Left chest wall pacemaker with leads in the right atrium and ventricle."],
    "fracture": ["Remote {side} {rib} rib fracture.", "Nondisplaced {side} {rib} rib fracture."],
    "scoliosis": ["Dextroconvex thoracic curvature.", "S-shaped curvature of the thoracolumbar spine."],
    "hiatal_hernia": ["Moderate hiatus hernia.", "Retrocardiac air-fluid level compatible with hiatal hernia."],
}
#: hedged statements of a present concept (written as uncertain)
HEDGED: dict[str, list[str]] = {
    "consolidation": ["Possible early {loc} consolidation."],
    "pleural_effusion": ["Trace {side} effusion is not excluded."],
    "atelectasis": ["Atelectasis versus scarring in {in_loc}."],
    "edema": ["Possible mild interstitial edema."],
    "pneumonia": ["Superimposed infection cannot be excluded.", "Developing pneumonia is not excluded.",
                  "Cannot exclude {loc} pneumonia."],
    "heart_failure": ["Findings may reflect fluid overload."],
}


@dataclass(frozen=True, slots=True)
class Normal:
    """A normal-study sentence: written only when every concept in ``requires`` is absent
    from the study; ``states`` are the concepts it asserts absent."""

    text: str
    requires: frozenset[str]
    states: frozenset[str]


def _n(text: str, requires: tuple[str, ...], states: tuple[str, ...] | None = None) -> Normal:
    return Normal(text, frozenset(requires), frozenset(states if states is not None else requires))


_LUNG_CLEAR = ("lung_opacity", "consolidation", "airspace_disease", "atelectasis", "edema", "nodule", "mass",
               "lung_lesion", "interstitial_markings")
NORMALS: dict[str, list[Normal]] = {
    "Lines and tubes": [_n("None.", ("support_devices",))],
    "Lungs": [
        _n("The lungs are clear.", _LUNG_CLEAR, ("lung_opacity",)),
        _n("Lungs are well expanded and clear.", _LUNG_CLEAR + ("hyperinflation",), ("lung_opacity", "atelectasis")),
        _n("No focal airspace disease.", ("airspace_disease", "consolidation", "lung_opacity"), ("airspace_disease",)),
        _n("No consolidation is seen.", ("consolidation",)),
        _n("No lobar consolidation or interstitial edema.", ("consolidation", "edema")),
        _n("No evidence of pulmonary edema.", ("edema",)),
        _n("No suspicious pulmonary nodule or mass.", ("nodule", "mass")),
        _n("Normal pulmonary vascularity.", ("vascular_congestion",)),
    ],
    "Pleura": [
        _n("No effusion or pneumothorax.", ("pleural_effusion", "pneumothorax")),
        _n("The pleural spaces are clear.", ("pleural_effusion", "pneumothorax", "costophrenic_blunting", "pleural_other"),
           ("pleural_effusion", "pneumothorax")),
        _n("No pneumothorax is identified.", ("pneumothorax",)),
        _n("No sizable pleural effusion.", ("pleural_effusion",)),
        _n("Costophrenic sulci are sharp.", ("costophrenic_blunting", "pleural_effusion"), ("costophrenic_blunting",)),
    ],
    "Heart and mediastinum": [
        _n("Heart size is within normal limits.", ("cardiomegaly",)),
        _n("The heart is not enlarged.", ("cardiomegaly",)),
        _n("Normal cardiac silhouette.", ("cardiomegaly",)),
        _n("Cardiomediastinal contours are normal.", ("cardiomegaly", "enlarged_cardiomediastinum")),
        _n("The mediastinum is not widened.", ("enlarged_cardiomediastinum",)),
        _n("Heart size and mediastinal contours are normal.", ("cardiomegaly", "enlarged_cardiomediastinum")),
    ],
    "Bones": [
        _n("No acute osseous abnormality.", ("fracture",)),
        _n("Osseous structures are intact.", ("fracture",)),
        _n("No displaced rib fracture.", ("fracture",)),
    ],
}
DIAGNOSES: dict[str, list[str]] = {
    "pneumonia": ["{Loc} pneumonia.", "Findings compatible with {loc} pneumonia.", "Multifocal bronchopneumonia."],
    "heart_failure": ["Decompensated heart failure.", "Findings compatible with CHF exacerbation.", "Congestive failure."],
    "copd": ["Chronic obstructive lung disease.", "Obstructive airways disease."],
    "granuloma": ["Calcified {loc} granuloma.", "Sequela of prior granulomatous infection."],
}
NORMAL_IMPRESSION = ["No acute cardiopulmonary process.", "No radiographic evidence of acute cardiopulmonary disease.",
                     "Normal chest radiograph.", "No acute intrathoracic abnormality."]
#: the technique sentence names the acquisition, which differs by site
TECHNIQUE = {"A": ["PA and lateral views of the chest.", "Frontal and lateral chest radiographs."],
             "B": ["Single portable AP view of the chest.", "Portable semi-upright frontal radiograph."]}
INDICATIONS = ["Cough.", "Shortness of breath.", "Chest pain.", "Preoperative evaluation.", "Fever.", "Follow-up."]
COMPARISONS = ["None.", "Prior chest radiograph.", "None available."]
#: concepts the impression may restate, most important first
KEY_FINDINGS = ("pneumothorax", "consolidation", "pleural_effusion", "edema", "mass", "cardiomegaly", "nodule",
                "lung_opacity", "atelectasis")


@dataclass
class StudyLayout:
    """Per-study choices the report and the style b renderer share, so text and image agree."""

    location: str
    side: str  # "right" | "left": side of one-sided pleural findings
    bilateral_effusion: bool


@dataclass
class ReportB:
    findings: str
    impression: str
    indication: str
    comparison: str
    stated: dict[str, str] = field(default_factory=dict)


def bilateral(state: dict[str, int], lay: StudyLayout) -> bool:
    """Whether pleural fluid is on both sides (text and image agree on it)."""
    return bool(lay.bilateral_effusion and state.get("pleural_effusion"))


def layout(rng: np.random.Generator) -> StudyLayout:
    return StudyLayout(str(rng.choice(list(LOCATIONS))), str(rng.choice(["right", "left"])), bool(rng.random() < 0.3))


def _fill(t: str, rng: np.random.Generator, lay: StudyLayout) -> str:
    _, _, _, adj, noun = LOCATIONS[lay.location]
    size = str(rng.choice(["small", "moderate", "trace"]))
    vals = {"loc": adj, "Loc": adj[0].upper() + adj[1:], "in_loc": noun, "side": lay.side, "Side": lay.side.capitalize(),
            "size": size, "Size": size.capitalize(), "mm": str(int(rng.integers(5, 15))), "Mm": str(int(rng.integers(5, 15))),
            "cm": str(int(rng.integers(2, 6))), "Cm": str(int(rng.integers(3, 7))),
            "rib": str(rng.choice(["fifth", "sixth", "seventh", "eighth"]))}
    return t.format(**vals)


def _state(stated: dict[str, str], concept: str, assertion: str) -> None:
    rank = {"present": 2, "uncertain": 1, "absent": 0}
    if concept not in stated or rank[assertion] > rank[stated[concept]]:
        stated[concept] = assertion


def write_report(state: dict[str, int], site: str, lay: StudyLayout, rng: np.random.Generator,
                 *, p_omit: float = 0.08, p_hedge: float = 0.08, p_headings: float = 0.6) -> ReportB:
    """One study's style b report; ``stated`` records what the text asserts."""
    stated: dict[str, str] = {}
    absent = {c for c, v in state.items() if not v}
    headings = rng.random() < p_headings
    lines: list[str] = [str(rng.choice(TECHNIQUE[site]))]
    written: dict[str, str] = {}  # concept -> its present sentence (for the impression)
    for heading, members in SYSTEMS:
        said: list[str] = []
        for c in members:
            if not state.get(c) or rng.random() < p_omit:
                continue  # absent, or a true finding left unmentioned
            if c in HEDGED and rng.random() < p_hedge:
                said.append(_fill(str(rng.choice(HEDGED[c])), rng, lay))
                _state(stated, c, "uncertain")
                continue
            if c == "pleural_effusion" and bilateral(state, lay):
                text = str(rng.choice(["Bilateral pleural effusions, right greater than left.",
                                       "Small bilateral pleural effusions."]))
            elif c == "costophrenic_blunting" and bilateral(state, lay):
                text = "Blunting of both costophrenic angles."
            else:
                text = _fill(str(rng.choice(PRESENT[c])), rng, lay)
            said.append(text)
            written[c] = text
            _state(stated, c, "present")
        normals = [x for x in NORMALS[heading] if x.requires <= absent]
        # a system with nothing to report gets its normal sentence (always under headings;
        # in prose the bones and the devices are often not mentioned); otherwise sometimes one
        want = (not said and (headings or heading not in ("Bones", "Lines and tubes") or rng.random() < 0.4)) \
            or (said and rng.random() < 0.5)
        if normals and want:
            x = normals[int(rng.integers(len(normals)))]
            said.append(x.text)
            for c in x.states:
                _state(stated, c, "absent")
        if headings:
            lines.append(f"{heading}: {' '.join(said) if said else 'Unremarkable.'}")
        elif said:
            lines.append(" ".join(said))
    findings = ("\n" if headings else " ").join(lines)
    items: list[str] = []
    for d in ("pneumonia", "heart_failure", "copd", "granuloma"):
        if not state.get(d):
            continue
        if d in HEDGED and rng.random() < p_hedge:
            items.append(_fill(str(rng.choice(HEDGED[d])), rng, lay))
            _state(stated, d, "uncertain")
        else:
            items.append(_fill(str(rng.choice(DIAGNOSES[d])), rng, lay))
            _state(stated, d, "present")
    key = [c for c in KEY_FINDINGS if c in written]
    if key and (not items or rng.random() < 0.5):
        items.append(written[key[0]])  # the impression restates the key finding
    if not items:
        items.append(str(rng.choice(NORMAL_IMPRESSION)))
    impression = items[0] if len(items) == 1 else " ".join(f"{i}. {t}" for i, t in enumerate(items, 1))
    return ReportB(findings, impression, str(rng.choice(INDICATIONS)), str(rng.choice(COMPARISONS)), stated)


def template_sentences() -> list[str]:
    """Every style b sentence template (for vocabulary comparisons with style a)."""
    out = [t for ts in PRESENT.values() for t in ts] + [t for ts in HEDGED.values() for t in ts]
    out += [x.text for xs in NORMALS.values() for x in xs] + [t for ts in DIAGNOSES.values() for t in ts]
    out += NORMAL_IMPRESSION + [t for ts in TECHNIQUE.values() for t in ts]
    return out

"""The true structural causal model behind ``kgrag synth``.

Drawn in the generative direction: diagnoses → findings → image findings, each
child a noisy-OR of its parents with a leak.  The learned graph points the other
way (image finding → finding → diagnosis), so it is compared against the
reversed edges, never copied from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: root priors (diagnoses, plus findings and image findings with no parent here)
PRIORS: dict[str, float] = {
    "pneumonia": 0.15,
    "heart_failure": 0.12,
    "copd": 0.10,
    "granuloma": 0.10,
    "fracture": 0.03,
    "scoliosis": 0.04,
    "hiatal_hernia": 0.03,
}

#: generative edges (parent, child, strength)
EDGES: list[tuple[str, str, float]] = [
    ("pneumonia", "consolidation", 0.80),
    ("pneumonia", "airspace_disease", 0.50),
    ("pneumonia", "atelectasis", 0.20),
    ("pneumonia", "pleural_effusion", 0.20),
    ("heart_failure", "cardiomegaly", 0.75),
    ("heart_failure", "pleural_effusion", 0.60),
    ("heart_failure", "edema", 0.60),
    ("heart_failure", "vascular_congestion", 0.50),
    ("copd", "emphysema", 0.80),
    ("granuloma", "lung_lesion", 0.70),
    ("consolidation", "lung_opacity", 0.90),
    ("airspace_disease", "lung_opacity", 0.70),
    ("atelectasis", "lung_opacity", 0.60),
    ("edema", "lung_opacity", 0.30),
    ("cardiomegaly", "enlarged_cardiomediastinum", 0.90),
    ("pleural_effusion", "costophrenic_blunting", 0.85),
    ("edema", "interstitial_markings", 0.70),
    ("vascular_congestion", "interstitial_markings", 0.60),
    ("pneumothorax", "pleural_line", 0.90),
    ("emphysema", "hyperinflation", 0.85),
    ("lung_lesion", "nodule", 0.80),
    ("lung_lesion", "mass", 0.20),
]

#: leak of every non-root node (its probability when no parent is present)
LEAKS: dict[str, float] = {
    "consolidation": 0.03,
    "airspace_disease": 0.03,
    "atelectasis": 0.08,
    "pleural_effusion": 0.03,
    "cardiomegaly": 0.05,
    "edema": 0.02,
    "vascular_congestion": 0.02,
    "emphysema": 0.02,
    "lung_lesion": 0.02,
    "pneumothorax": 0.05,
    "pleural_other": 0.02,
    "lung_opacity": 0.03,
    "enlarged_cardiomediastinum": 0.03,
    "costophrenic_blunting": 0.02,
    "interstitial_markings": 0.03,
    "pleural_line": 0.01,
    "hyperinflation": 0.03,
    "nodule": 0.03,
    "mass": 0.01,
    "support_devices": 0.10,
}

#: root priors of the out-of-distribution test split (``kgrag synth --shift``):
#: more acute disease (pneumonia, heart failure), less chronic disease (COPD, granuloma)
SHIFTED_PRIORS: dict[str, float] = {**PRIORS, "pneumonia": 0.30, "heart_failure": 0.25, "copd": 0.05, "granuloma": 0.05}

#: the confounder: acquisition site B (portable/ICU) goes with heart failure in train;
#: ``shifted`` (the test split under ``--shift``) reverses it
SITE_B_GIVEN = {"train": (0.80, 0.20), "shifted": (0.20, 0.80)}  # (P(B | hf), P(B | no hf))
SITE_B_DEVICE_BOOST = 0.25


def regime_of(split: str, shift: bool) -> str:
    """``shifted`` for the test split of a ``--shift`` corpus, else ``train`` (train and val
    always share one distribution, so val keeps calibrating and early-stopping in distribution)."""
    return "shifted" if (shift and split == "test") else "train"


def topo_order() -> list[str]:
    import graphlib

    # insertion order fixes the order graphlib returns, and with it which random draw each
    # node gets: iterating a set here made the corpus depend on PYTHONHASHSEED
    ts = graphlib.TopologicalSorter()
    for n in sorted(set(PRIORS) | set(LEAKS)):
        ts.add(n)
    for p, c, _ in EDGES:
        ts.add(c, p)
    return list(ts.static_order())


@dataclass(slots=True)
class Sample:
    state: dict[str, int]
    site: str


def sample_study(rng: np.random.Generator, split: str, shift: bool) -> Sample:
    """Draw one study's true concept states and its acquisition site."""
    regime = regime_of(split, shift)
    priors = SHIFTED_PRIORS if regime == "shifted" else PRIORS
    parents: dict[str, list[tuple[str, float]]] = {}
    for p, c, s in EDGES:
        parents.setdefault(c, []).append((p, s))
    state: dict[str, int] = {}
    for node in topo_order():
        if node in priors:
            prob = priors[node]
        else:
            q = 1.0 - LEAKS.get(node, 0.0)
            for p, s in parents.get(node, []):
                if state.get(p):
                    q *= 1.0 - s
            prob = 1.0 - q
        state[node] = int(rng.random() < prob)
    p_hf, p_nohf = SITE_B_GIVEN[regime]
    site = "B" if rng.random() < (p_hf if state["heart_failure"] else p_nohf) else "A"
    if site == "B" and not state["support_devices"] and rng.random() < SITE_B_DEVICE_BOOST:
        state["support_devices"] = 1
    return Sample(state, site)


def truth() -> dict:
    from kgrag.ontology import concepts

    cs = concepts()
    nodes = [
        {"id": n, "role": cs[n].role if n in cs else None, "prior": PRIORS.get(n), "leak": LEAKS.get(n)}
        for n in sorted(set(PRIORS) | set(LEAKS))
    ]
    return {
        "format": "kgrag.synth.truth.v1",
        "direction_note": "generative_edges point diagnosis -> finding -> image finding (how data are drawn); "
        "reader_edges are the same edges reversed (image finding -> finding -> diagnosis), "
        "the direction of kgrag's causal graph",
        "nodes": nodes,
        "generative_edges": [{"src": p, "dst": c, "strength": s} for p, c, s in EDGES],
        "reader_edges": [{"src": c, "dst": p, "generative_strength": s} for p, c, s in EDGES],
        "confounder": {
            "name": "site",
            "values": ["A", "B"],
            "p_site_b_given_heart_failure": {"train": SITE_B_GIVEN["train"][0], "shifted": SITE_B_GIVEN["shifted"][0]},
            "p_site_b_given_no_heart_failure": {"train": SITE_B_GIVEN["train"][1], "shifted": SITE_B_GIVEN["shifted"][1]},
            "visual_marker": "bright square in the top-left corner",
            "report_boilerplate": "PORTABLE AP VIEW.",
            "device_boost": SITE_B_DEVICE_BOOST,
        },
        "shift": {
            "applies_to": "the test split of a --shift corpus; train and val are never shifted",
            "priors_train": dict(sorted(PRIORS.items())),
            "priors_shifted": dict(sorted(SHIFTED_PRIORS.items())),
        },
    }

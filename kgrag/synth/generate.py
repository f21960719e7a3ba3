"""``kgrag synth``: write a phantom corpus (manifest, PNGs, truth.json, manifest.info.json).

Two styles share one causal model: ``a`` (:mod:`~kgrag.synth.reports`,
:mod:`~kgrag.synth.phantom`) and ``b``, a second phrasing and a second renderer
written independently (:mod:`~kgrag.synth.reports_b`, :mod:`~kgrag.synth.phantom_b`).
``shift=True`` makes the test split out of distribution: the other style, shifted
disease priors and the site confounder reversed; train and val are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kgrag.errors import InputError
from kgrag.synth import model, phantom, phantom_b, reports, reports_b

log = logging.getLogger(__name__)

STYLES = ("a", "b")
INFO_FORMAT = "kgrag.synth.info.v1"

SPLIT_FRACTIONS = (("train", 0.7), ("val", 0.1), ("test", 0.2))
QUESTION_TEMPLATES = {
    "pleural_effusion": "Is there pleural effusion?",
    "cardiomegaly": "Is the heart enlarged?",
    "pneumonia": "Is there evidence of pneumonia?",
    "pneumothorax": "Is there a pneumothorax?",
    "consolidation": "Is there consolidation?",
    "edema": "Is there pulmonary edema?",
    "lung_opacity": "Is there a lung opacity?",
    "heart_failure": "Are there signs of heart failure?",
    "nodule": "Is there a pulmonary nodule?",
    "emphysema": "Is there emphysema?",
}
#: the same questions as style b's users ask them
QUESTION_TEMPLATES_B = {
    "pleural_effusion": "Is a pleural effusion present?",
    "cardiomegaly": "Is there cardiomegaly?",
    "pneumonia": "Does the film show pneumonia?",
    "pneumothorax": "Is a pneumothorax present?",
    "consolidation": "Is any consolidation seen?",
    "edema": "Are there signs of pulmonary edema?",
    "lung_opacity": "Is there an airspace opacity?",
    "heart_failure": "Is this congestive heart failure?",
    "nodule": "Is a lung nodule seen?",
    "emphysema": "Are there emphysematous changes?",
}


@dataclass
class SynthSummary:
    outdir: str
    n: int
    seed: int
    shift: bool
    style: str = "a"
    splits: dict[str, int] = field(default_factory=dict)
    styles: dict[str, dict[str, int]] = field(default_factory=dict)
    prevalence: dict[str, float] = field(default_factory=dict)
    manifest_sha256: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _rng(seed: int, index: int) -> np.random.Generator:
    # one generator per study: n=100 is a prefix of n=200 for the same seed
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def split_of(u: float) -> str:
    acc = 0.0
    for name, frac in SPLIT_FRACTIONS:
        acc += frac
        if u < acc:
            return name
    return SPLIT_FRACTIONS[-1][0]


def other_style(style: str) -> str:
    return "b" if style == "a" else "a"


def style_of(style: str, split: str, shift: bool) -> str:
    """The style a study is written in: the corpus style, or the other one for the test
    split of a shifted corpus."""
    return other_style(style) if (shift and split == "test") else style


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise InputError(f"--style {style!r} is not one of {', '.join(STYLES)}", fix="pass --style a or --style b")


def make_study(seed: int, index: int, shift: bool, with_image: bool = True, style: str = "a",
               with_stated: bool = False) -> tuple[dict, np.ndarray | None]:
    """One study's manifest row (and image).  ``with_stated`` adds ``stated``: the
    assertion each concept was written with (for scoring an extractor; not in manifests)."""
    _check_style(style)
    rng = _rng(seed, index)
    split = split_of(rng.random())
    sample = model.sample_study(rng, split, shift)
    st = style_of(style, split, shift)
    sid = f"syn-{index:05d}"
    extra: dict = {}
    if st == "a":
        zone = str(rng.choice(list(phantom.ZONES)))
        findings, impression, stated = reports.write_report_stated(sample.state, sample.site, zone, rng)
        templates = QUESTION_TEMPLATES
    else:
        lay = reports_b.layout(rng)
        rep = reports_b.write_report(sample.state, sample.site, lay, rng)
        findings, impression, stated = rep.findings, rep.impression, rep.stated
        extra = {"indication": rep.indication, "comparison": rep.comparison}
        templates = QUESTION_TEMPLATES_B
    qs = []
    for c in rng.choice(list(templates), size=3, replace=False):
        qs.append({"question": templates[str(c)], "answer": "yes" if sample.state.get(str(c)) else "no",
                   "concept": str(c)})
    row = {
        "id": sid,
        "images": [f"img/{sid}.png"],
        "findings": findings,
        "impression": impression,
        **extra,
        "split": split,
        "modality": "radiology",
        "questions": qs,
        "labels": {k: int(v) for k, v in sorted(sample.state.items())},
        "site": sample.site,
        "style": st,
    }
    if with_stated:
        row["stated"] = dict(sorted(stated.items()))
    img = None
    if with_image:
        img = phantom.draw(sample.state, sample.site, rng, zone) if st == "a" else phantom_b.draw(sample.state, sample.site, lay, rng)
    return row, img


def shift_parameters(style: str, shift: bool) -> dict:
    """What differs between the in-distribution splits and the test split (recorded in
    ``manifest.info.json``)."""
    reg = {split: model.regime_of(split, shift) for split in ("train", "val", "test")}
    pri = {"train": model.PRIORS, "shifted": model.SHIFTED_PRIORS}
    return {
        "enabled": shift,
        "style": {split: style_of(style, split, shift) for split in reg},
        "regime": reg,
        "diagnosis_priors": {split: {d: pri[r][d] for d in sorted(model.PRIORS)} for split, r in reg.items()},
        "p_site_b_given_heart_failure": {split: model.SITE_B_GIVEN[r][0] for split, r in reg.items()},
        "p_site_b_given_no_heart_failure": {split: model.SITE_B_GIVEN[r][1] for split, r in reg.items()},
    }


def generate(outdir: str | os.PathLike[str], n: int, seed: int = 0, *, shift: bool = False, style: str = "a",
             progress: bool = True) -> SynthSummary:
    _check_style(style)
    if n < 1:
        raise InputError(f"--n must be at least 1 (got {n})", fix="pass --n 100 or more")
    out = Path(outdir)
    (out / "img").mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    rows = []
    tmp = out / "manifest.jsonl.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for i in tqdm(range(n), desc="synth", unit="study", disable=not progress, file=None):
            row, img = make_study(seed, i, shift, style=style)
            (out / row["images"][0]).write_bytes(phantom.to_png_bytes(img))
            f.write(json.dumps(row, sort_keys=True) + "\n")
            rows.append(row)
    os.replace(tmp, out / "manifest.jsonl")
    t = model.truth()
    t.update({"seed": seed, "n": n, "shift": shift, "style": style})
    t["styles"] = STYLE_NOTES
    (out / "truth.json").write_text(json.dumps(t, indent=2, sort_keys=True) + "\n")
    splits: dict[str, int] = {}
    styles: dict[str, dict[str, int]] = {}
    for r in rows:
        splits[r["split"]] = splits.get(r["split"], 0) + 1
        styles.setdefault(r["split"], {}).setdefault(r["style"], 0)
        styles[r["split"]][r["style"]] += 1
    keys = sorted(rows[0]["labels"])
    prev = {k: round(sum(r["labels"][k] for r in rows) / n, 4) for k in keys}
    by_split = {sp: {d: round(sum(r["labels"][d] for r in rows if r["split"] == sp) / c, 4) for d in sorted(model.PRIORS)}
                for sp, c in sorted(splits.items())}
    sha = hashlib.sha256((out / "manifest.jsonl").read_bytes()).hexdigest()
    from kgrag import __version__

    info = {"format": INFO_FORMAT, "generator": "kgrag synth", "kgrag_version": __version__, "manifest": "manifest.jsonl",
            "n": n, "seed": seed, "style": style, "shift": shift_parameters(style, shift), "splits": dict(sorted(splits.items())),
            "styles_by_split": {k: dict(sorted(v.items())) for k, v in sorted(styles.items())},
            "diagnosis_prevalence_by_split": by_split, "manifest_sha256": sha,
            "evaluation_only": ["labels", "questions"],
            "split_rule": "per study: the first draw of numpy's default_rng(SeedSequence([seed, index])) as a fraction: "
                          "< 0.7 train, < 0.8 val, else test"}
    (out / "manifest.info.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return SynthSummary(str(out), n, seed, shift, style, dict(sorted(splits.items())),
                        {k: dict(sorted(v.items())) for k, v in sorted(styles.items())}, prev, sha)


STYLE_NOTES = {
    "a": {"reports": "kgrag.synth.reports: one findings paragraph in shuffled order, a short impression",
          "images": "kgrag.synth.phantom: elliptical lungs and heart, flat intensities, additive noise",
          "site_marker_image": "site B: bright square in the top-left corner",
          "site_text": "site B: 'PORTABLE AP VIEW.'"},
    "b": {"reports": "kgrag.synth.reports_b: organ-system order (often under headings), indication, comparison, "
                     "technique sentence, numbered impression restating key findings",
          "images": "kgrag.synth.phantom_b: tapered lungs with domed bases, ribs, spine, gamma, blur, heel effect, "
                    "signal-dependent noise",
          "site_marker_image": "every film: an 'L' marker top right; site B: a burned-in label box bottom left",
          "site_text": "technique sentence: site A 'PA and lateral ...', site B 'portable AP/frontal ...'"},
}

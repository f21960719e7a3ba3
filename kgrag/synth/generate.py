"""``kgrag synth``: write a phantom corpus (manifest, PNGs, truth.json)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kgrag.errors import InputError
from kgrag.synth import model, phantom, reports

log = logging.getLogger(__name__)

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


@dataclass
class SynthSummary:
    outdir: str
    n: int
    seed: int
    shift: bool
    splits: dict[str, int] = field(default_factory=dict)
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


def make_study(seed: int, index: int, shift: bool, with_image: bool = True) -> tuple[dict, np.ndarray | None]:
    rng = _rng(seed, index)
    split = split_of(rng.random())
    sample = model.sample_study(rng, split, shift)
    zone = str(rng.choice(list(phantom.ZONES)))
    findings, impression = reports.write_report(sample.state, sample.site, zone, rng)
    sid = f"syn-{index:05d}"
    qs = []
    for c in rng.choice(list(QUESTION_TEMPLATES), size=3, replace=False):
        qs.append({"question": QUESTION_TEMPLATES[str(c)], "answer": "yes" if sample.state.get(str(c)) else "no",
                   "concept": str(c)})
    row = {
        "id": sid,
        "images": [f"img/{sid}.png"],
        "findings": findings,
        "impression": impression,
        "split": split,
        "modality": "radiology",
        "questions": qs,
        "labels": {k: int(v) for k, v in sorted(sample.state.items())},
        "site": sample.site,
    }
    img = phantom.draw(sample.state, sample.site, rng, zone) if with_image else None
    return row, img


def generate(outdir: str | os.PathLike[str], n: int, seed: int = 0, *, shift: bool = False,
             progress: bool = True) -> SynthSummary:
    if n < 1:
        raise InputError(f"--n must be at least 1 (got {n})", fix="pass --n 100 or more")
    out = Path(outdir)
    (out / "img").mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    rows = []
    tmp = out / "manifest.jsonl.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for i in tqdm(range(n), desc="synth", unit="study", disable=not progress, file=None):
            row, img = make_study(seed, i, shift)
            (out / row["images"][0]).write_bytes(phantom.to_png_bytes(img))
            f.write(json.dumps(row, sort_keys=True) + "\n")
            rows.append(row)
    os.replace(tmp, out / "manifest.jsonl")
    t = model.truth()
    t.update({"seed": seed, "n": n, "shift": shift})
    (out / "truth.json").write_text(json.dumps(t, indent=2, sort_keys=True) + "\n")
    splits: dict[str, int] = {}
    for r in rows:
        splits[r["split"]] = splits.get(r["split"], 0) + 1
    keys = sorted(rows[0]["labels"])
    prev = {k: round(sum(r["labels"][k] for r in rows) / n, 4) for k in keys}
    sha = hashlib.sha256((out / "manifest.jsonl").read_bytes()).hexdigest()
    return SynthSummary(str(out), n, seed, shift, splits, prev, sha)

"""How well kgrag's rule extractor reads each synth style, against the generator's truth.

    python benchmarks/bench_synth_extraction.py [--n 1000] [--seed 5]

Style b's phrasing is never used to tune the lexicon, so its numbers are a
held-out measure; style a's phrasing is covered by tests/unit/ingest/test_synth_phrasing.py.
Two scores per style, both micro-averaged over studies × concepts (the concepts the
generator labels; ``no_finding`` is not labelled and is left out):

- ``vs_labels``: extracted ``present`` against the true state (label 1).  Bounded
  by the reports themselves: a true finding left unmentioned (8%), hedged, or
  never written (e.g. an image finding the style has no sentence for) counts as
  a miss for any extractor.
- ``vs_stated``: extracted (concept, assertion) pairs against the pairs the
  generator wrote (present / absent / uncertain): the extractor's own error.

``b_headings_removed`` scores the same style b reports with their organ-system
headings ("Pleura: ") deleted, a diagnostic that separates the extractor's
handling of headed reports from its vocabulary.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter

from _common import write


def _prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4),
            "tp": tp, "fp": fp, "fn": fn}


def score(rows: list[dict], extracted: list[dict[str, str]]) -> dict:
    """Micro scores of extracted study-level assertions against labels and stated assertions."""
    lab = Counter()
    per_concept: dict[str, Counter] = {}
    pairs = Counter()
    by_assertion: dict[str, Counter] = {a: Counter() for a in ("present", "absent", "uncertain")}
    for r, got in zip(rows, extracted, strict=True):
        concepts = set(r["labels"])
        got = {c: a for c, a in got.items() if c in concepts}
        for c in concepts:
            t, p = r["labels"][c] == 1, got.get(c) == "present"
            key = "tp" if t and p else "fp" if p else "fn" if t else None
            if key:
                lab[key] += 1
                per_concept.setdefault(c, Counter())[key] += 1
        want = set(r["stated"].items())
        have = set(got.items())
        pairs["tp"] += len(want & have)
        pairs["fp"] += len(have - want)
        pairs["fn"] += len(want - have)
        for a, cnt in by_assertion.items():
            w = {x for x in want if x[1] == a}
            h = {x for x in have if x[1] == a}
            cnt["tp"] += len(w & h)
            cnt["fp"] += len(h - w)
            cnt["fn"] += len(w - h)
    return {
        "vs_labels": _prf(lab["tp"], lab["fp"], lab["fn"]),
        "vs_stated": _prf(pairs["tp"], pairs["fp"], pairs["fn"]),
        "vs_stated_by_assertion": {a: _prf(c["tp"], c["fp"], c["fn"]) for a, c in by_assertion.items()},
        "vs_labels_f1_by_concept": {c: _prf(k["tp"], k["fp"], k["fn"])["f1"] for c, k in sorted(per_concept.items())},
    }


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=5)
    a = ap.parse_args()
    from kgrag.ingest.extract import RuleExtractor, study_level
    from kgrag.ingest.sections import compose
    from kgrag.synth.generate import make_study
    from kgrag.synth.reports_b import SYSTEMS

    ext = RuleExtractor()
    ext.warm_up()
    out = {}
    heading = re.compile(r"(?m)^(?:" + "|".join(re.escape(h) for h, _ in SYSTEMS) + r"): ")
    for variant in ("a", "b", "b_headings_removed"):
        style = variant[0]
        rows = [make_study(a.seed, i, False, with_image=False, style=style, with_stated=True)[0] for i in range(a.n)]
        texts = [(r["id"], compose(heading.sub("", r["findings"]) if variant == "b_headings_removed" else r["findings"],
                                   r["impression"], {k: r[k] for k in ("indication", "comparison") if k in r}))
                 for r in rows]
        t0 = time.perf_counter()
        got = [study_level(m) for m in ext.extract_many(texts)]
        res = score(rows, got)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        out[variant] = res
    res = {"command": f"python benchmarks/bench_synth_extraction.py --n {a.n} --seed {a.seed}",
           "corpus": {"generator": "kgrag synth", "n": a.n, "seed": a.seed},
           "extractor": {"name": ext.name, "version": ext.version}, "styles": out}
    write("synth_extraction", res)
    return res


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))

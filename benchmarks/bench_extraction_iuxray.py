"""Concept extraction vs NLM MeSH labels on IU-Xray, with a keyword baseline in the same run.

    python benchmarks/bench_extraction_iuxray.py [--data data/iu]

Fetches the reports (kgrag fetch iu-xray) if the manifest is missing.  A study's
prediction for a concept is positive when the extractor asserts it present
(study level: present > uncertain > absent); a second column counts uncertain
mentions as positive too (CheXpert's U-Ones policy), since MeSH annotators
often tag hedged findings.  The baseline matches the same
lexicon phrases and calls a match negated when one of {no, without, free of,
negative for, not} occurs within the 6 preceding words.  Per-concept and micro
precision/recall/F1 go to benchmarks/results/extraction_iuxray.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CONCEPTS = ["cardiomegaly", "pleural_effusion", "atelectasis", "lung_opacity", "nodule", "emphysema", "edema",
            "pneumothorax", "pneumonia", "consolidation", "fracture", "granuloma"]
NEG = {"no", "without", "free", "negative", "not"}


def keyword_baseline(text: str, lexicon: list[dict]) -> set[str]:
    low = text.lower()
    words = [(m.group(0), m.start()) for m in re.finditer(r"[a-z]+", low)]
    found: set[str] = set()
    for r in lexicon:
        if r.get("assertion"):
            continue
        for m in re.finditer(r"\b" + re.escape(r["phrase"]) + r"\b", low):
            before = [w for w, s in words if s < m.start()][-6:]
            if not NEG & set(before):
                found.add(r["concept"])
    return found


def prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
            "tp": tp, "fp": fp, "fn": fn}


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT / "data" / "iu"))
    args = ap.parse_args()
    from kgrag.ingest.extract import RuleExtractor, lexicon, study_level
    from kgrag.ingest.sections import compose

    manifest = Path(args.data) / "manifest.jsonl"
    if not manifest.exists():
        from kgrag.ingest.fetch import fetch_iu_xray

        fetch_iu_xray(args.data)
    rows = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r.get("findings") or r.get("impression")]
    texts = [(r["id"], compose(r.get("findings"), r.get("impression"))) for r in rows]
    x = RuleExtractor()
    x.warm_up()
    t0 = time.perf_counter()
    ms = x.extract_many(texts)
    secs = time.perf_counter() - t0
    lex = lexicon()
    names = ("kgrag", "kgrag_u_ones", "keyword")
    counts = {name: {c: [0, 0, 0] for c in CONCEPTS} for name in names}
    for r, (_, text), m in zip(rows, texts, ms, strict=True):
        gold = {c for c, v in r["labels"].items() if v}
        level = study_level(m)
        ours = {c for c, a in level.items() if a == "present"}
        u_ones = {c for c, a in level.items() if a in ("present", "uncertain")}
        base = keyword_baseline(text, lex)
        for name, pred in (("kgrag", ours), ("kgrag_u_ones", u_ones), ("keyword", base)):
            for c in CONCEPTS:
                g, p = c in gold, c in pred
                counts[name][c][0] += g and p
                counts[name][c][1] += p and not g
                counts[name][c][2] += g and not p
    res = {"benchmark": "extraction_iuxray", "n_reports": len(rows), "extract_seconds": round(secs, 2),
           "reports_per_s_single_process": round(len(rows) / secs, 1)}
    for name in counts:
        per = {c: prf(*counts[name][c]) for c in CONCEPTS}
        tot = [sum(counts[name][c][i] for c in CONCEPTS) for i in range(3)]
        res[name] = {"micro": prf(*tot), "per_concept": per}
    res["policies"] = {"kgrag": "uncertain counted negative (default)",
                       "kgrag_u_ones": "uncertain counted positive (CheXpert U-Ones)"}
    for name in ("kgrag", "kgrag_u_ones"):
        res[f"{name}_beats_keyword_on"] = [c for c in CONCEPTS if res[name]["per_concept"][c]["f1"] > res["keyword"]["per_concept"][c]["f1"]]
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "extraction_iuxray.json").write_text(json.dumps(res, indent=1) + "\n")
    return res


if __name__ == "__main__":
    r = main()
    print(f"micro-F1 kgrag {r['kgrag']['micro']['f1']} (U-Ones {r['kgrag_u_ones']['micro']['f1']}) "
          f"vs keyword {r['keyword']['micro']['f1']} on {r['n_reports']} reports")
    for c in CONCEPTS:
        print(f"{c:18s} kgrag {r['kgrag']['per_concept'][c]['f1']:.3f}  U-Ones {r['kgrag_u_ones']['per_concept'][c]['f1']:.3f}"
              f"  keyword {r['keyword']['per_concept'][c]['f1']:.3f}")

"""The best any image reader could score on ``kgrag synth``, next to what kgrag scores.

The synthetic renderers draw the nine ImageFinding states and the site marker, nothing
else; a diagnosis reaches the image only through them.  ``kgrag.synth.bounds`` computes
P(d | those states) exactly under the true model (no sampling), and from it:

- ``bayes``: the AUC of the Bayes-optimal posterior on the test population (it knows
  the test distribution, the shifted one included): no score computed from the image
  can have a higher AUC;
- ``train_reader``: the AUC on the shifted test population of the exact posterior of
  the training distribution (the best a reader that learned the training data
  perfectly could do, the site confounder reversed under it);
- ``without_site``: the Bayes AUC when the site marker is ignored;
- ``all_findings``: the Bayes AUC when every non-diagnosis concept and the site are
  observed (what a report's findings section can state, more than the image shows);
- ``vote``: the balanced accuracy of a top-K majority vote with perfect retrieval
  (every retrieved train study has exactly the query's image states, K large).

The measured numbers come from ``benchmarks/results/causal_shift.json`` (the shift
benchmark) when it is there.  Writes ``benchmarks/results/synth_bounds.json``.

    python benchmarks/bench_synth_bounds.py
"""

from __future__ import annotations

import json
import time

from _common import RESULTS, write

DIAGNOSES = ("copd", "granuloma", "heart_failure", "pneumonia")  # the ones an image can show


def _macro(d: dict[str, float]) -> float:
    return round(sum(d.values()) / len(d), 4)


def _r(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in d.items()}


def main() -> dict:
    from kgrag.synth import bounds as b

    t0 = time.perf_counter()
    train, shifted = b.synth_nodes("train"), b.synth_nodes("shifted")
    img = b.image_nodes()
    no_site = [n for n in img if n != b.SITE]
    from kgrag.synth import model as truth

    findings = [n.name for n in train if n.name not in truth.PRIORS]
    out: dict = {"observed": img, "diagnoses": list(DIAGNOSES), "conditions": {}}
    for name, pop in (("in_distribution", train), ("shift", shifted)):
        c = {"bayes_auc": _r(b.auc_bound(pop, img, DIAGNOSES)),
             "without_site_auc": _r(b.auc_bound(pop, no_site, DIAGNOSES)),
             "all_findings_auc": _r(b.auc_bound(pop, findings, DIAGNOSES)),
             "vote_balanced_accuracy": _r(b.vote_bound(pop, train, img, DIAGNOSES))}
        if pop is shifted:
            c["train_reader_auc"] = _r(b.auc_bound(pop, img, DIAGNOSES, reader_nodes=train))
        c["macro"] = {k.removesuffix("_auc"): _macro(v) for k, v in c.items() if isinstance(v, dict)}
        out["conditions"][name] = c
        print(name, c["macro"], flush=True)
    measured = RESULTS / "causal_shift.json"
    if measured.exists():
        m = json.loads(measured.read_text())
        out["measured"] = {"source": "benchmarks/results/causal_shift.json", "command": m.get("command")}
        for name in ("in_distribution", "shift"):
            mac = m[name]["macro"]
            ceil = out["conditions"][name]["macro"]
            ans = mac["answer_auc"]
            out["measured"][name] = {
                "answer_auc": ans, "vote_balanced_accuracy": mac["vote_balanced_accuracy"],
                # how much of the way from chance (0.5) to the bound the answer gets
                "answer_share_of_attainable": round((ans - 0.5) / (ceil["bayes"] - 0.5), 3)}
    out["acceptance_note"] = ("issue 12 asks for an answer diagnosis macro-AUC >= 0.90 under --shift; "
                              "the Bayes-optimal bound over these diagnoses is conditions.shift.macro.bayes")
    out["seconds"] = round(time.perf_counter() - t0, 1)
    write("synth_bounds", out)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))

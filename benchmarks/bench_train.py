"""Train on a synthetic phantom corpus; report, on the held-out test split: image→report
Recall@1/5/10 against chance, the findings head (V_I) per concept — AUC against the
report's assertions and against the corpus's true state, ECE of the raw and the
calibrated probabilities — the fusion weights and Recall@10 per query form (from
training, on val), and the reward filter's effect on the evidence.

    python benchmarks/bench_train.py [--n 3000] [--epochs 12] [--pooling lpa] [--unmentioned absent|masked]
    python benchmarks/bench_train.py --home DIR    # reuse a home where the corpus is ingested

Evaluation reads the test split only after training and only to score the
trained model (it never feeds training, calibration, fusion or the reward model).
Besides exact-pair recall (report i is the match of image i), it reports
concept-match@k: the fraction of test images whose top-k reports include one with
exactly the same present-concept set — many phantom studies share a concept set,
so exact pairs are bounded by what pixels can tell apart.

Truth labels: ``kgrag synth`` writes each study's true state of every concept in
the manifest's ``labels`` (evaluation only).  The head is trained on what the
reports say; the truth AUC says how well it sees what is really there, which is
how the unmentioned-label policy (``--unmentioned``) is chosen.

Reward filter: each test image is a query; its stage-1 candidates are the top 50
train+val studies by the fused relevance of the image form; the evidence is the top
10 of them with and without the filter (the model's trained threshold for image
queries).  Reported: Recall@10 (concept-Jaccard ≥ 0.5 positives, see
:func:`kgrag.model.fusion.recall_at_k`), the mean number kept, and the top-10
evidence vote (fraction of evidence reports asserting a diagnosis) as AUC and as
balanced accuracy of the majority vote against the true diagnosis.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from _common import scratch_dir, write

DIAGNOSES = ("pneumonia", "heart_failure", "copd", "granuloma")


def _load(settings, split: str):
    from kgrag.docstore import DocStore

    with DocStore.from_settings(settings) as ds:
        studies = [s for s in ds.studies(split=split) if s.images]
        sc = ds.study_concepts(split=split)
    return studies, sc


def _eval_retrieval(model, studies, sc) -> dict:
    from kgrag.imaging import IMAGE_SIZE, load_image
    from kgrag.model.data import present_sets
    from kgrag.model.train import chance_recall, recall_at

    zi = model.encode_images([load_image(s.images[0], size=IMAGE_SIZE) for s in studies])
    zt = model.encode_texts([s.report for s in studies])
    n = len(studies)
    key = [frozenset(x) for x in present_sets([s.id for s in studies], sc)]
    same = np.array([[a == b for b in key] for a in key])
    order = np.argsort(-(zi @ zt.T), axis=1)
    cm = {f"concept_match@{k}": float(np.mean([same[i, order[i, :k]].any() for i in range(n)])) for k in (1, 5, 10)}
    cm_chance = float(np.mean(same.sum(axis=1) / n))  # a random report shares the query's set w.p. m_q / n
    return {"n": n, "recall": recall_at(zi, zt), "chance": chance_recall(n), **cm, "concept_match@1_chance": cm_chance,
            "distinct_concept_sets": len(set(key))}


def _eval_head(model, studies, sc) -> dict:
    """Per head concept on test: AUC vs the report (present vs absent/unmentioned, hedged
    left out) and vs the true state; ECE of raw and calibrated probabilities vs the report."""
    from kgrag.imaging import IMAGE_SIZE, load_image
    from kgrag.model.calibration import ece, sigmoid
    from kgrag.model.data import finding_labels
    from kgrag.model.train import auc

    images = [load_image(s.images[0], size=IMAGE_SIZE) for s in studies]
    z = model.head_logits(images)
    q = model.calibrate(z)
    y, m = finding_labels([s.id for s in studies], sc, model.findings, unmentioned="absent")
    out = {}
    for j, c in enumerate(model.findings):
        k = m[:, j] > 0
        truth = np.array([s.labels.get(c, -1) for s in studies])
        kt = truth >= 0
        a_rep, a_true = auc(y[k, j], z[k, j]), auc(truth[kt], z[kt, j])
        out[c] = {"in_vi": c in model.visible, "auc_report": None if np.isnan(a_rep) else round(a_rep, 4),
                  "auc_truth": None if np.isnan(a_true) else round(a_true, 4),
                  "ece_raw": round(ece(y[k, j], sigmoid(z[k, j])), 4), "ece_calibrated": round(ece(y[k, j], q[k, j]), 4),
                  "prevalence_report": round(float(y[k, j].mean()), 4),
                  "prevalence_truth": None if not kt.any() else round(float(truth[kt].mean()), 4)}
    vals = [v for v in out.values() if v["auc_truth"] is not None]
    summary = {"mean_auc_truth": round(float(np.mean([v["auc_truth"] for v in vals])), 4),
               "mean_auc_report": round(float(np.mean([v["auc_report"] for v in vals if v["auc_report"] is not None])), 4),
               "mean_ece_raw": round(float(np.mean([v["ece_raw"] for v in out.values()])), 4),
               "mean_ece_calibrated": round(float(np.mean([v["ece_calibrated"] for v in out.values()])), 4),
               "in_vi": sum(v["in_vi"] for v in out.values()), "head_concepts": len(out)}
    return {"summary": summary, "per_concept": out}


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    tpr = float(pred[y == 1].mean()) if (y == 1).any() else float("nan")
    tnr = float((~pred[y == 0]).mean()) if (y == 0).any() else float("nan")
    return (tpr + tnr) / 2


def _eval_reward_filter(settings, model, test, sc_test) -> dict:
    """The reward filter's effect on stage-1 evidence for image queries."""
    from kgrag.imaging import IMAGE_SIZE, load_image
    from kgrag.model.data import present_sets
    from kgrag.model.fusion import fused_relevance, jaccard_matrix
    from kgrag.model.train import auc

    pool, sc_pool = [], {}
    for sp in ("train", "val"):
        st, sc = _load(settings, sp)
        pool += st
        sc_pool.update(sc)
    T = model.encode_texts([s.report for s in pool])
    II = model.encode_images([load_image(s.images[0], size=IMAGE_SIZE) for s in pool])
    Q = model.encode_images([load_image(s.images[0], size=IMAGE_SIZE) for s in test])
    w = model.fusion.for_form("image")
    sims = np.stack([Q @ T.T, Q @ II.T, np.zeros((len(Q), len(T)))], axis=-1)
    rel = fused_relevance(w, sims, "image")
    top50 = np.argsort(-rel, axis=1, kind="stable")[:, :50]
    q_sets = present_sets([s.id for s in test], sc_test)
    p_sets = present_sets([s.id for s in pool], sc_pool)
    pos = jaccard_matrix(q_sets, p_sets) >= 0.5
    thr = model.reward_threshold_for("image")
    out = {"threshold": thr, "queries": len(test), "stage1": 50, "k": 10}
    for name, use in (("without", False), ("with", True)):
        kept_rows, n_kept = [], []
        for i, cand in enumerate(top50):
            if use and thr is not None:
                r = model.reward(Q[i][None], T[cand])
                keep = cand[r >= thr]
                keep = keep if len(keep) else cand[:1]
            else:
                keep = cand
            kept_rows.append(keep[:10])
            n_kept.append(len(keep[:10]))
        # recall@10 over the evidence actually kept (a short list is scored against min(10, |pos|))
        row = {"recall@10": round(_recall_kept(kept_rows, pos), 4), "mean_evidence": round(float(np.mean(n_kept)), 3)}
        for d in DIAGNOSES:
            truth = np.array([s.labels.get(d, 0) for s in test])
            vote = np.array([np.mean([sc_pool.get(pool[j].id, {}).get(d) == "present" for j in keep]) for keep in kept_rows])
            row[d] = {"vote_auc": round(auc(truth, vote), 4), "majority_balanced_accuracy": round(_balanced_accuracy(truth, vote > 0.5), 4),
                      "any_balanced_accuracy": round(_balanced_accuracy(truth, vote > 0), 4)}
        out[name] = row
    return out


def _recall_kept(kept_rows, pos) -> float:
    """Mean over queries with a positive of |positives among the kept evidence| / min(10, |positives|)."""
    vals = []
    for i, keep in enumerate(kept_rows):
        n = int(pos[i].sum())
        if n:
            vals.append(pos[i, keep].sum() / min(10, n))
    return float(np.mean(vals))


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--pooling", default="lpa", choices=["gap", "lpa", "mspp"])
    ap.add_argument("--unmentioned", default=None, choices=["absent", "masked"])
    ap.add_argument("--home", help="a kgrag home with the corpus already ingested (skips synth + ingest)")
    ap.add_argument("--out", default="train", help="results file name (benchmarks/results/<out>.json)")
    a = ap.parse_args()
    from kgrag.config import load_settings
    from kgrag.graph.falkordb_server import EmbeddedFalkorDB
    from kgrag.model.retrieval_model import RetrievalModel
    from kgrag.model.train import train

    prep_s = None
    if a.home:
        s = load_settings(a.home)
    else:
        from kgrag.ingest.pipeline import ingest
        from kgrag.synth.generate import generate

        tmp = scratch_dir("kgrag-bench-train-")
        t0 = time.perf_counter()
        generate(tmp / "c", a.n, seed=1, progress=False)
        s = load_settings(tmp / "home")
        ingest(s, tmp / "c" / "manifest.jsonl", workers=2, progress=False)
        EmbeddedFalkorDB(s.graph_dir).stop()
        prep_s = round(time.perf_counter() - t0, 1)
    load_before = os.getloadavg()
    rep = train(s, epochs=a.epochs, pooling=a.pooling, name=f"bench-{a.pooling}-{a.unmentioned or 'default'}",
                progress=False, unmentioned=a.unmentioned)
    load_after = os.getloadavg()
    model = RetrievalModel.load(rep.path)
    model.warm_up()
    test, sc_test = _load(s, "test")
    val, sc_val = _load(s, "val")
    res = {"command": f"python benchmarks/bench_train.py --epochs {a.epochs} --pooling {a.pooling}"
                      + (f" --unmentioned {a.unmentioned}" if a.unmentioned else "")
                      + (f" --home {a.home}" if a.home else f" --n {a.n}") + (f" --out {a.out}" if a.out != "train" else ""),
           "corpus": {"generator": "kgrag synth", "n": a.n if not a.home else None, "n_train": rep.n_train, "n_val": rep.n_val,
                      "n_test": len(test)},
           "corpus_prep_seconds": prep_s, "pooling": a.pooling, "unmentioned": rep.unmentioned, "epochs_max": a.epochs,
           "epochs_run": rep.epochs_run, "best_epoch": rep.best_epoch, "train_seconds": round(rep.seconds, 1),
           "contrastive_seconds": round(rep.seconds_contrastive, 1), "torch_threads": __import__("torch").get_num_threads(),
           "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
           "test": _eval_retrieval(model, test, sc_test), "val": _eval_retrieval(model, val, sc_val),
           "findings_head_test": _eval_head(model, test, sc_test),
           "findings_head_val": rep.findings, "visible": rep.visible, "excluded": rep.excluded,
           "fusion": rep.fusion, "fusion_forms_val": rep.fusion_forms,
           "reward": {"train_pair_accuracy": rep.reward_pair_accuracy, "val_pair_accuracy": rep.reward_val_pair_accuracy,
                      "thresholds": rep.reward_thresholds},
           "reward_filter_test": _eval_reward_filter(s, model, test, sc_test),
           "temperature": rep.temperature, "history": rep.history}
    write(a.out, res)
    return res


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))

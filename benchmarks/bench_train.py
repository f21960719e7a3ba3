"""Train on a synthetic phantom corpus; report image→report Recall@1/5/10 on the
held-out test split (and val) against chance, findings-head AUCs and training time.

    python benchmarks/bench_train.py [--n 3000] [--epochs 12] [--pooling lpa]
    python benchmarks/bench_train.py --home DIR    # reuse a home where the corpus is ingested

Evaluation reads the test split only after training and only to score the
trained model (it never feeds training, fusion or the reward model).  Besides
exact-pair recall (report i is the match of image i), it reports concept-match@k:
the fraction of test images whose top-k reports include one with exactly the
same present-concept set — many phantom studies share a concept set, so exact
pairs are bounded by what pixels can tell apart.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import write


def _eval(settings, model, split: str) -> dict:
    from kgrag.docstore import DocStore
    from kgrag.imaging import IMAGE_SIZE, load_image
    from kgrag.model.data import present_sets
    from kgrag.model.train import chance_recall, recall_at

    with DocStore.from_settings(settings) as ds:
        studies = [s for s in ds.studies(split=split) if s.images]
        sc = ds.study_concepts(split=split)
    zi = model.encode_images([load_image(s.images[0], size=IMAGE_SIZE) for s in studies])
    zt = model.encode_texts([s.report for s in studies])
    n = len(studies)
    sets = present_sets([s.id for s in studies], sc)
    key = [frozenset(x) for x in sets]
    same = np.array([[a == b for b in key] for a in key])
    order = np.argsort(-(zi @ zt.T), axis=1)
    cm = {f"concept_match@{k}": float(np.mean([same[i, order[i, :k]].any() for i in range(n)])) for k in (1, 5, 10)}
    # chance of concept-match@1: a random report shares the query's set with probability m_q / n
    cm_chance = float(np.mean(same.sum(axis=1) / n))
    return {"n": n, "recall": recall_at(zi, zt), "chance": chance_recall(n), **cm, "concept_match@1_chance": cm_chance,
            "distinct_concept_sets": len(set(key))}


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--pooling", default="lpa", choices=["gap", "lpa", "mspp"])
    ap.add_argument("--home", help="a kgrag home with the corpus already ingested (skips synth + ingest)")
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

        tmp = Path(tempfile.mkdtemp(prefix="kgrag-bench-train-"))
        t0 = time.perf_counter()
        generate(tmp / "c", a.n, seed=1, progress=False)
        s = load_settings(tmp / "home")
        ingest(s, tmp / "c" / "manifest.jsonl", workers=2, progress=False)
        EmbeddedFalkorDB(s.graph_dir).stop()
        prep_s = round(time.perf_counter() - t0, 1)
    load_before = os.getloadavg()
    rep = train(s, epochs=a.epochs, pooling=a.pooling, name=f"bench-{a.pooling}", progress=False)
    load_after = os.getloadavg()
    model = RetrievalModel.load(rep.path)
    model.warm_up()
    res = {"command": f"python benchmarks/bench_train.py --epochs {a.epochs} --pooling {a.pooling}"
                      + (f" --home {a.home}" if a.home else f" --n {a.n}"),
           "corpus": {"generator": "kgrag synth", "n": a.n, "seed": 1, "n_train": rep.n_train, "n_val": rep.n_val},
           "corpus_prep_seconds": prep_s, "pooling": a.pooling, "epochs_max": a.epochs, "epochs_run": rep.epochs_run,
           "best_epoch": rep.best_epoch, "train_seconds": round(rep.seconds, 1),
           "contrastive_seconds": round(rep.seconds_contrastive, 1), "torch_threads": __import__("torch").get_num_threads(),
           "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
           "test": _eval(s, model, "test"), "val": _eval(s, model, "val"),
           "findings_auc_val": rep.findings_auc,
           "findings_auc_val_mean": round(float(np.mean([v for v in rep.findings_auc.values() if v is not None])), 4),
           "fusion": rep.fusion, "reward": {"train_pair_accuracy": rep.reward_pair_accuracy,
                                            "val_pair_accuracy": rep.reward_val_pair_accuracy,
                                            "threshold": rep.reward_threshold},
           "temperature": rep.temperature, "history": rep.history}
    write("train", res)
    return res


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))

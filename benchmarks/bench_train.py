"""Train on a synthetic phantom corpus and report image→report Recall@1/5/10 on
the val split against chance, the findings-head AUCs and the training time.

    python benchmarks/bench_train.py [--n 3000] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import write


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--pooling", default="lpa")
    a = ap.parse_args()
    from kgrag.config import load_settings
    from kgrag.ingest.pipeline import ingest
    from kgrag.kg.falkordb_server import EmbeddedFalkorDB
    from kgrag.retrieval.train import train
    from kgrag.synth.generate import generate

    tmp = Path(tempfile.mkdtemp(prefix="kgrag-bench-train-"))
    generate(tmp / "c", a.n, seed=1, progress=False)
    s = load_settings(tmp / "home")
    ingest(s, tmp / "c" / "manifest.jsonl", workers=2, progress=False)
    rep = train(s, epochs=a.epochs, pooling=a.pooling, progress=False)
    EmbeddedFalkorDB(s.graph_dir).stop()
    res = {"corpus": {"n": a.n, "seed": 1, "n_train": rep.n_train, "n_val": rep.n_val}, "epochs": a.epochs,
           "pooling": a.pooling, "train_seconds": round(rep.seconds, 1), "val_recall": rep.val_recall,
           "chance_recall": rep.chance_recall, "findings_auc": rep.findings_auc, "fusion": rep.fusion,
           "reward_pair_accuracy": rep.reward_pair_accuracy, "best_epoch": rep.best_epoch}
    write("train", res)
    return res


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))

"""Generation on a synth home: closed-question AUC of the grounded writer against its
causal weight, report provenance, and generator latency (grounded; a tiny random
transformers model with and without IFA).

Every test-split study with an image asks its manifest questions (yes/no, with the
synthetic truth as the answer).  Each query runs the real pipeline once; its evidence
bundle is then answered by the grounded writer at several ``causal_weight`` values
(w = 1: the posterior P(c | V_I) alone where the graph has an opinion; w = 0: the
evidence vote alone), so the comparison is paired.  AUC is per concept over the test
questions about it (scikit-learn), then the macro mean over concepts with both answers.

Usage: python benchmarks/bench_generation.py [--home DIR] [--n 800] [--epochs 4]
(without --home a fresh synth home is built in a temporary directory).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _common import percentiles, write

WEIGHTS = (0.0, 0.3, 0.5, 0.7, 0.85, 1.0)


def build_home(root: Path, n: int, epochs: int, seed: int = 7):
    from kgrag.config import load_settings
    from kgrag.index.indexset import build_from_settings
    from kgrag.ingest.pipeline import ingest
    from kgrag.kg.build import build_graph
    from kgrag.model.train import train
    from kgrag.synth.generate import generate

    generate(root / "corpus", n, seed=seed, progress=False)
    s = load_settings(root / "home")
    ingest(s, root / "corpus" / "manifest.jsonl", progress=False)
    build_graph(s, progress=False)
    train(s, epochs=epochs, progress=False)
    build_from_settings(s)
    return s, root / "corpus" / "manifest.jsonl"


def auc(y: list[int], p: list[float]) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(set(y)) == 2 else None


def main(home: str | None, n: int, epochs: int, max_studies: int) -> dict:
    from kgrag.config import load_settings
    from kgrag.generation.base import task_for
    from kgrag.generation.grounded import GroundedGenerator
    from kgrag.query.pipeline import Query, QueryPipeline

    tmp = None
    if home is None:
        tmp = tempfile.TemporaryDirectory(prefix="kgrag-bench-gen-")
        s, manifest = build_home(Path(tmp.name), n, epochs)
    else:
        s = load_settings(home)
        manifest = Path(home).parent / "corpus" / "manifest.jsonl"
    rows = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]
    base = manifest.parent
    test = [r for r in rows if r.get("split") == "test" and r.get("images")][:max_studies]
    pipe = QueryPipeline.from_settings(s)
    gens = {w: GroundedGenerator(causal_weight=w) for w in WEIGHTS}
    per: dict[float, dict[str, tuple[list[int], list[float]]]] = {w: defaultdict(lambda: ([], [])) for w in WEIGHTS}
    correct = {w: 0 for w in WEIGHTS}
    n_q = 0
    parsed_ok = 0
    answer_ms: list[float] = []
    query_ms: list[float] = []
    sources: dict[str, int] = defaultdict(int)
    report_sentences = []
    try:
        for r in test:
            img = str(base / r["images"][0])
            t0 = time.perf_counter()
            st = pipe.retrieve(pipe.state_for(Query(images=[img])))
            b = pipe.bundle(st)
            query_ms.append((time.perf_counter() - t0) * 1000.0)
            t1 = time.perf_counter()
            rep = gens[0.7].generate(b, "report")
            answer_ms.append((time.perf_counter() - t1) * 1000.0)
            report_sentences.append(len(rep.sentences))
            for x in rep.sentences:
                sources[x["source"]] += 1
            for qa in r.get("questions", []):
                st = pipe.retrieve(pipe.state_for(Query(images=[img], question=qa["question"])))
                b = pipe.bundle(st)
                n_q += 1
                parsed_ok += int(b.question is not None and b.question.concept == qa.get("concept"))
                truth = 1 if qa["answer"] == "yes" else 0
                for w, g in gens.items():
                    a = g.generate(b, task_for(b))
                    if a.probability is None:
                        continue
                    ys, ps = per[w][qa.get("concept") or "?"]
                    ys.append(truth)
                    ps.append(a.probability)
                    correct[w] += int((a.yes_no == "yes") == bool(truth))
    finally:
        pipe.close()
        if tmp is not None:
            tmp.cleanup()
    by_weight = {}
    for w in WEIGHTS:
        aucs = {c: auc(ys, ps) for c, (ys, ps) in per[w].items()}
        scored = [v for v in aucs.values() if v is not None]
        by_weight[str(w)] = {"macro_auc": round(statistics.fmean(scored), 4) if scored else None,
                             "accuracy": round(correct[w] / max(n_q, 1), 4),
                             "per_concept_auc": {c: None if v is None else round(v, 4) for c, v in sorted(aucs.items())}}
    total = sum(sources.values()) or 1
    return {
        "home": str(s.home) if home else f"synth n={n}, {epochs} epochs (temporary)",
        "test_studies": len(test), "questions": n_q,
        "question_parse_accuracy": round(parsed_ok / max(n_q, 1), 4),
        "closed_by_causal_weight": by_weight,
        "report": {"sentences_mean": round(statistics.fmean(report_sentences), 2) if report_sentences else 0,
                   "source_share": {k: round(v / total, 4) for k, v in sorted(sources.items())}},
        "latency_ms": {"query_to_bundle": percentiles(query_ms), "grounded_report": percentiles(answer_ms)},
    }


def tiny_lm_latency(repeat: int = 15) -> dict:
    """A tiny random Llama-style model (built from a config) writing 16 tokens for a ~1,100-token
    prompt, IFA off and on (all layers), interleaved so machine drift hits both alike."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit" / "generation"))
    from _gen_bundles import bundle, closed
    from _gen_tiny import save_tiny_llama

    from kgrag.generation.hf import TransformersGenerator

    out = {}
    with tempfile.TemporaryDirectory() as d:
        path = save_tiny_llama(Path(d) / "tiny")
        b = bundle(closed("pleural_effusion", text="Is there pleural effusion?"))
        gens = {lam: TransformersGenerator(path, max_new_tokens=16, ifa_lambda=lam) for lam in (0.0, 0.5)}
        ts: dict[float, list[float]] = {lam: [] for lam in gens}
        for g in gens.values():
            g.generate(b)  # warm
        for _ in range(repeat):
            for lam, g in gens.items():
                t0 = time.perf_counter()
                g.generate(b)
                ts[lam].append((time.perf_counter() - t0) * 1000.0)
        for lam in gens:
            out[f"ifa_lambda_{lam}"] = percentiles(ts[lam])
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default=None)
    ap.add_argument("--n", type=int, default=800)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--max-studies", type=int, default=200)
    ap.add_argument("--latency-only", action="store_true", help="rerun only the tiny-model latency into the last results")
    args = ap.parse_args()
    if args.latency_only:
        from _common import RESULTS

        res = {k: v for k, v in json.loads((RESULTS / "generation.json").read_text()).items()
               if k not in ("benchmark", "machine", "measured_at")}
    else:
        res = main(args.home, args.n, args.epochs, args.max_studies)
    res["tiny_transformers_16_tokens_ms"] = tiny_lm_latency()
    print(json.dumps(res, indent=1))
    print(write("generation", res))

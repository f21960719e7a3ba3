"""Run the benchmarks (each writes its own results/<name>.json), then write
results/SUMMARY.md from every results/*.json present.

    python benchmarks/run_all.py              # every speed benchmark (make bench)
    python benchmarks/run_all.py --all        # speed and quality (training, IU-Xray)
    python benchmarks/run_all.py query e2e    # these only
    python benchmarks/run_all.py --summary    # only rewrite SUMMARY.md

Speed: cli (start-up), ingest, kg (causal scoring call), index (build, search,
HNSW recall), query (warm query from V_I at 4k / 100k), e2e (image + question →
answer, encoders included, at 4k / 100k).  Quality: train (retrieval recall of a
trained model), extraction_iuxray (extractor vs MeSH), iuxray_eval (semantic vs
causal vs PageRank on IU-Xray findings text), synth_bounds (the Bayes-optimal
bounds of the synthetic corpus).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RESULTS = HERE / "results"
SPEED = ("cli", "ingest", "kg", "index", "query", "e2e")
QUALITY = ("train", "extraction_iuxray", "iuxray_eval", "synth_bounds")


def _f(v: Any, nd: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
            + ["| " + " | ".join(_f(c) for c in r) + " |" for r in rows])


def _cli(d: dict) -> list[str]:
    return _table(["kgrag --help p50 s", "import kgrag p50 s", "target s", "meets"],
                  [[d["kgrag_help_s"]["p50"], d["import_kgrag_s"]["p50"], d.get("target_help_s"), d.get("meets_target")]])


def _ingest(d: dict) -> list[str]:
    return _table(["run", "reports/s", "seconds", "written", "failed"],
                  [[k, v.get("reports_per_s"), v.get("seconds"), v.get("written"), v.get("failed")] for k, v in d["runs"].items()])


def _kg(d: dict) -> list[str]:
    g = d.get("graph", {}).get("counts", {})
    return _table(["concepts", "accepted edges", "FalkorDB scoring p50 ms", "p95 ms", "Python reference p50 ms"],
                  [[g.get("concepts"), g.get("accepted"), d["falkordb_ms"]["p50"], d["falkordb_ms"]["p95"],
                    d["python_reference_ms"]["p50"]]])


def _index(d: dict) -> list[str]:
    return _table(["n", "vectors", "kind", "build s (3 spaces)", "search k=50 p50 ms", "recall@10 vs exact"],
                  [[r["n"], r["vectors"], r["kind"], r.get("build_s_three_spaces"), (r.get("search_k50_ms") or {}).get("p50"),
                    r.get("recall_at_10_vs_exact")] for r in d["runs"]])


def _query(d: dict) -> list[str]:
    return _table(["studies", "index", "causal p50 ms", "p95 ms", "in-process baseline p50 ms", "ratio"],
                  [[n, r["index_kind"], r["causal_ms"]["p50"], r["causal_ms"]["p95"], r["baseline_ms"]["p50"], r["ratio_p50"]]
                   for n, r in d["results"].items()])


def _e2e(d: dict) -> list[str]:
    rows = []
    for n, r in d["results"].items():
        st = sorted(r["stage_ms_p50"].items(), key=lambda kv: -kv[1])[:3]
        enc = r["encoders_ms_p50"]
        rows.append([n, r["index_kind"], r["query_ms"]["p50"], r["query_ms"]["p95"], r["query_ms"]["n"],
                     "; ".join(f"{k} {v:.1f}" for k, v in st), enc.get("image_embedding"), enc.get("findings_head"),
                     enc.get("question"), r["open_s"]])
    out = _table(["studies", "index", "query p50 ms", "p95 ms", "n", "slowest stages (p50 ms)", "image CNN ms",
                  "findings head ms", "question encoder ms", "open s"], rows)
    la = d.get("load_average_before")
    if la:
        out.append(f"\nLoad average before / after: {la} / {d.get('load_average_after')} (torch threads {d.get('torch_threads')}).")
    return out


def _train(d: dict) -> list[str]:
    t = d["test"]
    return _table(["train s", "epochs", "test R@1", "R@5", "R@10", "concept-match@10", "chance R@10"],
                  [[d["train_seconds"], d["epochs_run"], t["recall"]["R@1"], t["recall"]["R@5"], t["recall"]["R@10"],
                    t["concept_match@10"], t["chance"]["R@10"]]])


def _extraction(d: dict) -> list[str]:
    return _table(["system", "micro P", "micro R", "micro F1"],
                  [[k, d[k]["micro"]["precision"], d[k]["micro"]["recall"], d[k]["micro"]["f1"]]
                   for k in ("kgrag", "kgrag_u_ones", "keyword") if k in d])


def _iuxray_eval(d: dict) -> list[str]:
    return [str(x) for x in d.get("summary_lines", [])] or _generic(d)


def _synth_bounds(d: dict) -> list[str]:
    c, m = d["conditions"], d.get("measured", {})
    keys = [("bayes", "Bayes-optimal AUC from the image"), ("train_reader", "training-distribution reader AUC"),
            ("without_site", "Bayes AUC, site ignored"), ("all_findings", "Bayes AUC, every finding observed"),
            ("vote_balanced_accuracy", "perfect-retrieval majority vote BA")]
    rows = [[label, c["in_distribution"]["macro"].get(k), c["shift"]["macro"].get(k)] for k, label in keys]
    if m:
        rows.append(["kgrag answer AUC (causal_shift.json)", m["in_distribution"]["answer_auc"], m["shift"]["answer_auc"]])
    return _table(["macro over " + ", ".join(d["diagnoses"]), "in distribution", "shift"], rows)


def _generic(d: dict) -> list[str]:
    rows = [[k, v] for k, v in d.items() if isinstance(v, int | float | str | bool) and k != "benchmark"]
    return _table(["key", "value"], rows[:20])


SUMMARIES: dict[str, Callable[[dict], list[str]]] = {
    "cli": _cli, "cli_startup": _cli, "ingest": _ingest, "kg": _kg, "index": _index, "query": _query, "e2e": _e2e,
    "train": _train, "extraction_iuxray": _extraction, "iuxray_eval": _iuxray_eval,
    "synth_bounds": _synth_bounds}


def write_summary() -> Path:
    lines = ["# Benchmark results", "", "Written by `python benchmarks/run_all.py` from `benchmarks/results/*.json`; "
             "each section names its script and when it was measured.", ""]
    for p in sorted(RESULTS.glob("*.json")):
        try:
            d = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        name = p.stem
        fn = SUMMARIES.get(name) or SUMMARIES.get(str(d.get("benchmark"))) or _generic
        lines += [f"## {name}", "", f"`benchmarks/bench_{name}.py` — measured {d.get('measured_at', '?')}"
                  + (f" on {d['machine'].get('cpus')} CPUs" if isinstance(d.get("machine"), dict) else ""), ""]
        try:
            lines += fn(d)
        except (KeyError, TypeError) as e:
            lines += [f"(unexpected layout: {e!r})", *_generic(d)]
        lines.append("")
    out = RESULTS / "SUMMARY.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def main(argv: list[str]) -> int:
    if "--summary" in argv:
        print(write_summary())
        return 0
    names = [a for a in argv if not a.startswith("--")]
    if names:
        chosen = names
    elif "--all" in argv:
        chosen = [*SPEED, *QUALITY]
    else:
        chosen = list(SPEED)
    scripts = [HERE / f"bench_{n}.py" for n in chosen]
    missing = [s.name for s in scripts if not s.exists()]
    if missing:
        print("no such benchmark: " + ", ".join(missing), file=sys.stderr)
        return 2
    failed = []
    for s in scripts:
        t0 = time.perf_counter()
        print(f"== {s.name}", file=sys.stderr, flush=True)
        r = subprocess.run([sys.executable, str(s)], cwd=HERE.parent)
        print(f"== {s.name}: exit {r.returncode} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        if r.returncode:
            failed.append(s.name)
    print(f"summary: {write_summary()}", file=sys.stderr)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

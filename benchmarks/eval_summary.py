"""Keep the headline of a ``kgrag eval`` run in ``benchmarks/results/``.

    python benchmarks/eval_summary.py RUN_DIR NAME

``RUN_DIR`` is an eval output directory (``results.json`` + ``results.md``).  Writes
``benchmarks/results/NAME.json`` — the run's command, commit, versions and machine,
and per task every variant's CI'd metrics and the paired tests (no per-query
predictions, no report texts) — and copies ``results.md`` to
``benchmarks/results/NAME.md``.  The README's result tables cite these files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from _common import RESULTS, write


def _ci(c: dict | None) -> dict | None:
    """A bootstrap interval as value [low, high] (the resampling settings are in ``run``)."""
    return None if c is None else {k: c.get(k) for k in ("value", "low", "high") if k in c}


def summarize(run: dict) -> dict:
    out = {k: run.get(k) for k in ("format", "tasks", "run", "home", "graphs", "notes", "skipped", "failures")}
    out["run"] = {k: v for k, v in (run.get("run") or {}).items() if k != "dir"}
    m = run.get("manifest") or {}
    out["manifest"] = {k: m.get(k) for k in ("n_rows", "splits", "n_test", "n_evaluated_studies", "train_styles")}
    out["results"] = {}
    for task, r in (run.get("results") or {}).items():
        out["results"][task] = {
            "n_queries": r.get("n_queries"),
            "primary": r.get("primary"),
            "variants": {v: {k: _ci(c) for k, c in (x.get("ci") or {}).items()}
                         for v, x in (r.get("variants") or {}).items()},
            "paired": [{**{k: p.get(k) for k in ("a", "b", "metric", "a_value", "b_value", "difference", "p_value", "n")},
                        "ci": _ci(p.get("ci"))} for p in r.get("paired") or []],
            "groups": {g: {"n": x.get("n"), "variants": {v: {k: _ci(c) for k, c in (m.get("ci") or {}).items()}
                                                          for v, m in (x.get("variants") or {}).items()}}
                       for g, x in (r.get("groups") or {}).items()},
        }
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    run_dir, name = Path(argv[0]), argv[1]
    run = json.loads((run_dir / "results.json").read_text())
    write(name, summarize(run))
    (RESULTS / f"{name}.md").write_text((run_dir / "results.md").read_text())
    print(f"wrote {RESULTS / name}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

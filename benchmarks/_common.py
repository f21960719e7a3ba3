"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))


def scratch_dir(prefix: str) -> Path:
    """A temp folder for one benchmark run, removed when the script exits (indexes of
    100k studies take about a gigabyte); ``KGRAG_BENCH_KEEP=1`` keeps it and says where."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    if os.environ.get("KGRAG_BENCH_KEEP"):
        print(f"benchmark scratch folder kept: {d}", file=sys.stderr)
    else:
        atexit.register(shutil.rmtree, d, True)
    return d


def percentiles(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"p50": round(statistics.median(xs), 4), "p95": round(xs[min(len(xs) - 1, int(0.95 * len(xs)))], 4),
            "mean": round(statistics.fmean(xs), 4), "n": len(xs)}


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def write(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **data}
    p = RESULTS / f"{name}.json"
    p.write_text(json.dumps(data, indent=1) + "\n")
    return p

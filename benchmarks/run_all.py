"""Run every benchmarks/bench_*.py in turn; each writes its own results/<name>.json.

Usage: python benchmarks/run_all.py [NAME ...]   (e.g. `cli query`)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in argv]
    failed = []
    for s in scripts:
        t0 = time.perf_counter()
        print(f"== {s.name}", file=sys.stderr, flush=True)
        r = subprocess.run([sys.executable, str(s)], cwd=HERE.parent)
        print(f"== {s.name}: exit {r.returncode} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        if r.returncode:
            failed.append(s.name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

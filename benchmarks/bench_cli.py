"""Start-up cost of the CLI: `kgrag --help` and `import kgrag`, wall time in .venv.

Target: `kgrag --help` under 1.0 s.  Writes benchmarks/results/cli.json.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _time(cmd: list[str], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        out.append(time.perf_counter() - t0)
    return out


def main(repeat: int = 15) -> dict:
    exe = shutil.which("kgrag", path=str(Path(sys.executable).parent)) or "kgrag"
    help_t = _time([exe, "--help"], repeat)
    import_t = _time([sys.executable, "-c", "import kgrag"], repeat)
    bare_t = _time([sys.executable, "-c", "pass"], repeat)
    res = {
        "benchmark": "cli_startup",
        "repeat": repeat,
        "kgrag_help_s": {"p50": statistics.median(help_t), "max": max(help_t)},
        "import_kgrag_s": {"p50": statistics.median(import_t), "max": max(import_t)},
        "bare_python_s": {"p50": statistics.median(bare_t), "max": max(bare_t)},
        "target_help_s": 1.0,
        "meets_target": max(help_t) < 1.0,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cli.json").write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))

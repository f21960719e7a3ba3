"""FAISS index build time and peak RSS at 4k and 100k synthetic 256-d vectors,
exact (flat) vs HNSW, each build in its own process so peak RSS is its own."""

from __future__ import annotations

import json
import subprocess
import sys

from _common import ROOT, write

CHILD = r"""
import json, resource, sys, tempfile, time
from pathlib import Path
import numpy as np
sys.path.insert(0, %r)
from kgrag.retrieval.encoders import HashEncoder
from kgrag.retrieval.index import IndexSet
n, flat_max = int(sys.argv[1]), int(sys.argv[2])
v = np.random.default_rng(0).standard_normal((n, 256)).astype(np.float32)
v /= np.linalg.norm(v, axis=1, keepdims=True)
ids = [f"s{i}" for i in range(n)]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
idx = IndexSet._assemble(Path(tempfile.mkdtemp()) / "idx", HashEncoder(256), {"text": (ids, v), "image": (ids, v), "fused": (ids, v)},
                         {i: "radiology" for i in ids}, {i: "train" for i in ids}, None, flat_max)
dt = time.perf_counter() - t0
print(json.dumps({"n": n, "kind": idx.info()["spaces"]["fused"]["kind"], "build_s_three_spaces": round(dt, 2),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "rss_before_build_mb": round(base / 1024, 1)}))
""".replace("%r", repr(str(ROOT)))


def main() -> dict:
    runs = []
    for n in (4_000, 100_000):
        for flat_max in (10**9, 0):  # exact, then HNSW
            r = subprocess.run([sys.executable, "-c", CHILD, str(n), str(flat_max)], capture_output=True, text=True, check=True)
            runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    res = {"dim": 256, "spaces": 3, "runs": runs}
    write("index", res)
    return res


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))

"""FAISS index build time and peak RSS at 4k and 100k synthetic 256-d vectors,
exact (flat) vs HNSW, each build in its own process so the peak RSS is its own.
Also: single-query search latency (k = 50), HNSW recall@10 against the exact
answer, incremental ``add`` of 1,000 studies, and load time.

HNSW recall is measured on two vector distributions: unit Gaussian (no
neighbourhood structure at all: in 256 dimensions every point is nearly
equidistant from a random query, the worst case for any graph index) and
"lowrank32" (a 32-d Gaussian latent projected to 256-d plus 10 % noise, the
low intrinsic dimension real sentence and image embeddings have), with queries
drawn from the same distribution.

    python benchmarks/bench_index.py [--sizes 4000 100000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _common import ROOT, write

CHILD = r"""
import json, resource, shutil, sys, tempfile, time
from pathlib import Path
import numpy as np
sys.path.insert(0, ROOT)
from kgrag.model.encoders import HashEncoder
from kgrag.index.indexset import IndexSet
from kgrag.types import Study as S

n, flat_max, dist = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
proj = rng.standard_normal((32, 256))

def draw(m):
    if dist == "gaussian":
        x = rng.standard_normal((m, 256))
    else:  # lowrank32
        x = rng.standard_normal((m, 32)) @ proj + 0.1 * np.sqrt(32) * rng.standard_normal((m, 256))  # noise sd = 10 % of signal sd
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)

v = draw(n)
ids = [f"s{i}" for i in range(n)]
rss = lambda: round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
base = rss()
out = Path(tempfile.mkdtemp(prefix="kgrag-bench-index-")) / "idx"
enc = HashEncoder(256)
t0 = time.perf_counter()
idx = IndexSet.from_vectors(out, enc, {"text": (ids, v), "image": (ids, v), "fused": (ids, v)},
                            {i: "radiology" for i in ids}, {i: "train" for i in ids}, None, flat_max)
build = time.perf_counter() - t0
peak_build = rss()
t0 = time.perf_counter()
idx = IndexSet.load(out, model=enc)
load = time.perf_counter() - t0
q = draw(200)
lat = []
for row in q:
    t0 = time.perf_counter()
    idx.search("fused", row[None], 50)
    lat.append((time.perf_counter() - t0) * 1000)
got, _ = idx.search("fused", q, 10)
exact = np.argsort(-(q @ v.T), axis=1)[:, :10]
recall = float(np.mean([len(set(g) & {ids[j] for j in e}) / 10 for g, e in zip(got, exact)]))

t0 = time.perf_counter()
added = idx.add([S(f"new{i}", f"report {i} effusion") for i in range(1000)])
add_s = time.perf_counter() - t0
lat.sort()
print(json.dumps({"n": n, "vectors": dist, "kind": idx.info()["spaces"]["fused"]["kind"], "build_s_three_spaces": round(build, 2),
                  "rss_before_build_mb": base, "peak_rss_after_build_mb": peak_build, "load_s": round(load, 3),
                  "search_k50_ms": {"p50": round(lat[len(lat) // 2], 3), "p95": round(lat[int(0.95 * len(lat))], 3)},
                  "recall_at_10_vs_exact": round(recall, 4), "add_1000_s": round(add_s, 2), "added": added,
                  "peak_rss_mb": rss()}))
shutil.rmtree(out.parent, ignore_errors=True)
""".replace("ROOT", repr(str(ROOT)))


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[4_000, 100_000])
    a = ap.parse_args()
    runs = []
    for n in a.sizes:
        for flat_max, dist in ((10**9, "gaussian"), (0, "gaussian"), (0, "lowrank32")):  # exact, then HNSW
            r = subprocess.run([sys.executable, "-c", CHILD, str(n), str(flat_max), dist], capture_output=True,
                               text=True, check=True)
            runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]), file=sys.stderr)
    res = {"command": "python benchmarks/bench_index.py --sizes " + " ".join(map(str, a.sizes)), "dim": 256,
           "spaces": 3, "vectors": {"gaussian": "unit Gaussian, 256-d (no neighbourhood structure; worst case for HNSW recall)",
                       "lowrank32": "32-d Gaussian latent x fixed 32x256 projection + isotropic noise, unit-normalised"},
           "hnsw_params": {"M": 32, "efConstruction": 80, "efSearch": 128}, "runs": runs}
    write("index", res)
    return res


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))

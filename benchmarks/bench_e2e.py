"""End-to-end warm query latency: image + question → answer, encoders included.

    python benchmarks/bench_e2e.py [--sizes 4000 100000] [--repeat 30]

One query is ``QueryPipeline.run(Query(images=[PNG], question=...))`` on a warm
pipeline opened with ``QueryPipeline.from_settings``: the PNG is read and resized,
the image CNN embeds it and its findings head gives V_I, the question goes
through the sentence encoder (all-MiniLM-L6-v2) and the text projection, then
routing, the graph calls, stage-1 FAISS search and fusion, the causal rerank, the
reward filter, stage-2 definitions, paths and counterfactuals, and the grounded
answer with its evidence sentences read from the SQLite docstore.

The home is built for the benchmark: a retrieval model with the shipped
architecture (LPA CNN, width 32, 256-d; weights at their seeded initial values —
latency does not depend on what the weights learned), the synthetic corpus's
true graph (reader direction) as accepted edges on the embedded FalkorDB, a
docstore of N studies whose reports are drawn by ``kgrag synth``'s report writer
with mentions from the drawn states, and an index of N studies on synthetic
embedding-like vectors (a 32-d latent through a fixed projection plus noise, as
``bench_index.py``; flat at 4k, HNSW at 100k).  Query images are phantoms drawn
by ``kgrag synth`` and questions its templates, a different pair per query.

Reports p50/p95 of the whole call, the median stage timings from the answer's
trace, and the encoders alone (image embedding, findings head, question) on the
same inputs.  Writes benchmarks/results/e2e.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from _common import percentiles, scratch_dir, write


def _docstore_rows(n: int, seed: int):
    from kgrag.ontology import concepts
    from kgrag.synth import model as truth
    from kgrag.synth import reports
    from kgrag.types import Mention

    roles = {c.id: c.role for c in concepts().values()}
    rng = np.random.default_rng(seed)
    for i in range(n):
        smp = truth.sample_study(rng, "train", False)
        findings, impression = reports.write_report(smp.state, smp.site, "right lower lobe", rng)
        text = f"FINDINGS: {findings}\n\nIMPRESSION: {impression}"
        ms = [Mention(f"b{i}", c, roles.get(c, "Finding"), "present" if v else "absent", "findings",
                      f"{c.replace('_', ' ')} {'present' if v else 'absent'}.", 0, 1, c, "rules", "rules.v3")
              for c, v in smp.state.items() if c in roles and (v or rng.random() < 0.15)]
        yield {"id": f"b{i}", "split": "train", "modality": "radiology", "report": text, "findings": findings,
               "impression": impression, "content_hash": f"h{i}", "sections": [], "mentions": ms, "images": []}


def _vectors(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    proj = rng.standard_normal((32, 256)).astype(np.float32)
    base = rng.standard_normal((n, 32)).astype(np.float32) @ proj
    out = {}
    for sp in ("text", "image", "fused"):
        v = base + 0.5 * np.linalg.norm(proj, axis=0).mean() * rng.standard_normal((n, 256)).astype(np.float32)
        out[sp] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def build_home(root: Path, n: int, seed: int = 0) -> tuple[object, dict]:
    import torch

    from kgrag.config import load_settings
    from kgrag.docstore import DocStore
    from kgrag.graph.factory import open_store
    from kgrag.index.indexset import IndexSet
    from kgrag.model.cnn import ImageEncoder, TextProjection
    from kgrag.model.encoders import SentenceTextEncoder
    from kgrag.model.fusion import FusionWeights
    from kgrag.model.retrieval_model import RetrievalModel
    from kgrag.ontology import concepts, ids_with_role
    from kgrag.synth import model as truth

    s = load_settings(root)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    findings = ids_with_role("ImageFinding")  # the findings head as kgrag train builds it
    enc = SentenceTextEncoder(s.models.text_encoder)
    enc.warm_up()
    model = RetrievalModel(ImageEncoder(256, len(findings), "lpa", 32), TextProjection(enc.dim, 256), enc, findings,
                           FusionWeights(0.4, 0.4, 0.2), manifest={"name": "default", "n_train": 0, "n_val": 0})
    model.save(s.models_dir / "default")
    timings = {"model_s": round(time.perf_counter() - t0, 2)}
    t0 = time.perf_counter()
    store = open_store(s)
    store.upsert_concepts(concepts().values())
    store.upsert_edges([{"src": c, "dst": p, "p": st * 0.8, "status": "accepted"} for p, c, st in truth.EDGES])
    store.set_meta("build_params", {"benchmark": "e2e"})
    gv = store.version()
    store.close()
    timings["graph_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    with DocStore.from_settings(s) as ds:
        batch = []
        for row in _docstore_rows(n, seed):
            batch.append(row)
            if len(batch) == 2000:
                ds.write_batch(batch)
                batch = []
        if batch:
            ds.write_batch(batch)
    timings["docstore_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    ids = [f"b{i}" for i in range(n)]
    vec = _vectors(n, np.random.default_rng(seed))
    IndexSet.from_vectors(s.index_dir, RetrievalModel.load(s.models_dir / "default", text_encoder=enc),
                          {sp: (ids, v) for sp, v in vec.items()}, {i: "radiology" for i in ids},
                          {i: "train" for i in ids}, graph_version=gv, flat_max=s.retrieval.flat_index_max)
    timings["index_s"] = round(time.perf_counter() - t0, 2)
    return s, timings


def _queries(root: Path, m: int) -> list[tuple[str, str]]:
    from kgrag.synth import phantom
    from kgrag.synth.generate import QUESTION_TEMPLATES, make_study

    root.mkdir(parents=True, exist_ok=True)
    qs = list(QUESTION_TEMPLATES.values())
    out = []
    for i in range(m):
        _, img = make_study(99, i, False)
        p = root / f"q{i}.png"
        p.write_bytes(phantom.to_png_bytes(img))
        out.append((str(p), qs[i % len(qs)]))
    return out


def measure(settings, queries: list[tuple[str, str]], repeat: int, warm: int = 5) -> dict:
    from kgrag.imaging import IMAGE_SIZE, load_image
    from kgrag.query.pipeline import Query, QueryPipeline

    t0 = time.perf_counter()
    pipe = QueryPipeline.from_settings(settings)
    open_s = time.perf_counter() - t0
    try:
        for img, q in queries[:warm]:
            pipe.run(Query(images=[img], question=q))
        total, stages = [], {}
        for j in range(repeat):
            img, q = queries[warm + j]
            t1 = time.perf_counter()
            res = pipe.run(Query(images=[img], question=q))
            total.append((time.perf_counter() - t1) * 1000.0)
            for k, v in res["trace"]["timings_ms"].items():
                stages.setdefault(k, []).append(v)
            assert res["evidence"] and res["answer"] is not None
        enc = {"image_embedding": [], "findings_head": [], "question": []}
        for j in range(repeat):
            img, q = queries[warm + j]
            x = [load_image(img, size=IMAGE_SIZE)]
            for key, fn in (("image_embedding", lambda x=x: pipe.model.encode_images(x)),
                            ("findings_head", lambda x=x: pipe.model.findings_probs(x)),
                            ("question", lambda q=q: pipe.model.encode_texts([q]))):
                t1 = time.perf_counter()
                fn()
                enc[key].append((time.perf_counter() - t1) * 1000.0)
    finally:
        pipe.close()
    return {"open_s": round(open_s, 2), "query_ms": percentiles(total),
            "stage_ms_p50": {k: round(statistics.median(v), 3) for k, v in stages.items()},
            "encoders_ms_p50": {k: round(statistics.median(v), 3) for k, v in enc.items()}}


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4_000, 100_000])
    ap.add_argument("--repeat", type=int, default=30)
    a = ap.parse_args()
    import os

    import torch

    from kgrag.graph.falkordb_server import EmbeddedFalkorDB

    tmp = scratch_dir("kgrag-e2e-")
    queries = _queries(tmp / "queries", a.repeat + 5)
    res = {"command": "python benchmarks/bench_e2e.py --sizes " + " ".join(map(str, a.sizes)) + f" --repeat {a.repeat}",
           "query": "image (128x128 PNG phantom) + closed question, k=10, n=50, causal rerank, grounded answer",
           "torch_threads": torch.get_num_threads(), "load_average_before": [round(x, 2) for x in os.getloadavg()],
           "results": {}}
    for n in a.sizes:
        home = tmp / f"h{n}"
        s, build = build_home(home, n)
        try:
            r = measure(s, queries, a.repeat)
        finally:
            EmbeddedFalkorDB(s.graph_dir).stop()
        r["build"] = build
        r["index_kind"] = json.loads((s.index_dir / "fused" / "manifest.json").read_text())["kind"]
        res["results"][str(n)] = r
        print(n, json.dumps(r), flush=True)
    res["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if tuple(a.sizes) == (4_000, 100_000):
        write("e2e", res)
    return res


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))

"""Text ingest throughput (sections + extraction + docstore + graph) in reports/s.

A synthetic corpus of 3,000 reports is ingested from scratch with 1 and 2
workers into fresh homes on the embedded FalkorDB.  Images are left out so the
number is about text.  When the IU-Xray manifest exists (``kgrag fetch iu-xray
data/iu``), its 3,955 reports are ingested the same way with 2 workers.  Times
include the extraction workers' start-up; the graph server is started first.
The 1-minute load average is recorded: the machine may be shared.
Target: ≥ 200 reports/s with --workers 2.

    python benchmarks/bench_ingest.py
"""

from __future__ import annotations

import json
import os

from _common import ROOT, scratch_dir, write


def main(n: int = 3000) -> dict:
    from kgrag.config import load_settings
    from kgrag.graph.falkordb_server import EmbeddedFalkorDB
    from kgrag.ingest.pipeline import ingest
    from kgrag.synth.generate import make_study

    tmp = scratch_dir("kgrag-bench-ingest-")
    m = tmp / "manifest.jsonl"
    with open(m, "w") as f:
        for i in range(n):
            row, _ = make_study(11, i, False, with_image=False)
            row["images"] = []
            f.write(json.dumps(row) + "\n")
    res = {"n_reports": n, "command": "python benchmarks/bench_ingest.py", "runs": {}}
    iu = ROOT / "data" / "iu" / "manifest.jsonl"
    plan = [("workers_1", m, 1), ("workers_2", m, 2)] + ([("iu_xray_workers_2", iu, 2)] if iu.exists() else [])
    for name, manifest, workers in plan:
        s = load_settings(tmp / f"home-{name}")
        EmbeddedFalkorDB(s.graph_dir).start()  # server start-up is not ingest time
        load = os.getloadavg()[0]
        rep = ingest(s, manifest, workers=workers, progress=False)
        res["runs"][name] = {"seconds": round(rep.seconds, 2), "reports_per_s": round(rep.reports_per_s, 1),
                             "written": rep.n_written, "failed": rep.n_failed, "mentions": rep.n_mentions,
                             "load_avg_1min_before": round(load, 2)}
        EmbeddedFalkorDB(s.graph_dir).stop()
    res["target_reports_per_s_workers_2"] = 200
    res["meets_target"] = res["runs"]["workers_2"]["reports_per_s"] >= 200
    write("ingest", res)
    return res


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))

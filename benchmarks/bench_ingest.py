"""Text ingest throughput (sections + extraction + docstore + graph) in reports/s.

A synthetic corpus of 3,000 reports is ingested from scratch with 1 and 2
workers into fresh homes on the embedded FalkorDB.  Images are left out so the
number is about text.  Target: ≥ 200 reports/s with --workers 2.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from _common import write


def main(n: int = 3000) -> dict:
    from kgrag.config import load_settings
    from kgrag.ingest.pipeline import ingest
    from kgrag.kg.falkordb_server import EmbeddedFalkorDB
    from kgrag.synth.generate import make_study

    tmp = Path(tempfile.mkdtemp(prefix="kgrag-bench-ingest-"))
    m = tmp / "manifest.jsonl"
    with open(m, "w") as f:
        for i in range(n):
            row, _ = make_study(11, i, False, with_image=False)
            row["images"] = []
            f.write(json.dumps(row) + "\n")
    res = {"n_reports": n, "runs": {}}
    for workers in (1, 2):
        s = load_settings(tmp / f"home{workers}")
        EmbeddedFalkorDB(s.graph_dir).start()  # server start-up is not ingest time
        rep = ingest(s, m, workers=workers, progress=False)
        res["runs"][f"workers_{workers}"] = {"seconds": round(rep.seconds, 2), "reports_per_s": round(rep.reports_per_s, 1),
                                             "mentions": rep.n_mentions}
        EmbeddedFalkorDB(s.graph_dir).stop()
    res["target_reports_per_s_workers_2"] = 200
    res["meets_target"] = res["runs"]["workers_2"]["reports_per_s"] >= 200
    write("ingest", res)
    return res


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))

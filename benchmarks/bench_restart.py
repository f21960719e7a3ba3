"""Embedded FalkorDB restart time against the AOF: the statement log a corpus leaves,
replayed one statement at a time, versus the snapshot an AOF rewrite makes of it.

A synthetic corpus (1,000 and 3,600 studies, images left out) is ingested and its
graph built with the automatic rewrite switched off, so the AOF holds every
statement; the server is restarted (timed), the AOF rewritten, and restarted again
(timed).  The start-up timeout kgrag would allow for each AOF is recorded beside it.
The 1-minute load average is recorded: the machine may be shared.  (Before this
benchmark existed, an AOF written by the previous kgrag for 3,600 studies, whose
schema statements are replayed with the data, took 6.6-7.0 s to load here.)

    python benchmarks/bench_restart.py
"""

from __future__ import annotations

import json
import os
import time

from _common import scratch_dir, write


def main(sizes: tuple[int, ...] = (1000, 3600)) -> dict:
    import kgrag.graph.falkordb_server as fs
    from kgrag.config import load_settings
    from kgrag.ingest.pipeline import ingest
    from kgrag.kg.build import build_graph
    from kgrag.synth.generate import make_study

    fs.COMPACT_MIN_INCR_BYTES = 1 << 40  # keep the whole statement log for the first restart
    res: dict = {"command": "python benchmarks/bench_restart.py", "runs": {}}
    for n in sizes:
        tmp = scratch_dir("kgrag-bench-restart-")
        m = tmp / "manifest.jsonl"
        with open(m, "w") as f:
            for i in range(n):
                row, _ = make_study(11, i, False, with_image=False)
                row["images"] = []
                f.write(json.dumps(row) + "\n")
        s = load_settings(tmp / "home")
        ingest(s, m, progress=False)
        build_graph(s, progress=False)
        srv = fs.EmbeddedFalkorDB.from_settings(s)
        run: dict = {"load_avg_1min_before": round(os.getloadavg()[0], 2)}
        for phase in ("statement_log", "after_rewrite"):
            base, incr = srv.aof_sizes()
            srv.stop()
            t0 = time.perf_counter()
            srv.start()
            run[phase] = {"aof_base_bytes": base, "aof_statement_bytes": incr,
                          "restart_s": round(time.perf_counter() - t0, 3),
                          "start_timeout_allowed_s": round(srv.start_timeout(), 1)}
            if phase == "statement_log":
                assert srv.compact(0, wait=60.0)
        srv.stop()
        res["runs"][f"studies_{n}"] = run
    return res


if __name__ == "__main__":
    out = main()
    print(json.dumps(out, indent=1))
    print(write("restart", out))

"""An in-memory GraphStore fake for the ingest pipeline (studies, concepts, ASSERTS).

With ``path`` set, the state is written atomically to a JSON file after every call,
so a subprocess killed with SIGKILL leaves exactly the state of its last finished
call (like a graph engine that commits each statement).  ``kill_after`` names a
call (``"delete_mentions:2"`` = the 2nd delete_mentions) after which the process
kills itself, to test resumption at a precise point.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any


class FakeGraphStore:
    backend = "fake"

    def __init__(self, path: str | Path | None = None, kill_after: str | None = None) -> None:
        self.path = Path(path) if path else None
        self.kill_after = kill_after
        self.calls: Counter[str] = Counter()
        self.concepts_: dict[str, dict[str, Any]] = {}
        self.studies: dict[str, dict[str, Any]] = {}
        self.asserts: dict[str, dict[str, Any]] = {}  # "study|concept" -> row
        if self.path and self.path.exists():
            d = json.loads(self.path.read_text())
            self.concepts_, self.studies, self.asserts = d["concepts"], d["studies"], d["asserts"]

    def _done(self, name: str) -> None:
        self.calls[name] += 1
        if self.path:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.dump(), sort_keys=True))
            os.replace(tmp, self.path)
        if self.kill_after == f"{name}:{self.calls[name]}":
            os.kill(os.getpid(), signal.SIGKILL)

    def dump(self) -> dict[str, Any]:
        return {"concepts": self.concepts_, "studies": self.studies, "asserts": self.asserts}

    def ensure_schema(self) -> None:
        pass

    def close(self) -> None:
        pass

    def compact(self) -> bool:
        return False

    def study_hashes(self) -> dict[str, str | None]:
        return {sid: r.get("content_hash") for sid, r in self.studies.items()}

    def upsert_concepts(self, concepts) -> int:
        n = 0
        for c in concepts:
            d = c.to_dict() if hasattr(c, "to_dict") else dict(c)
            self.concepts_[d["id"]] = {"role": d["role"], "name": d["name"]}
            n += 1
        self._done("upsert_concepts")
        return n

    def upsert_studies(self, studies) -> int:
        rows = list(studies)
        for r in rows:
            self.studies[r["id"]] = dict(r)
        self._done("upsert_studies")
        return len(rows)

    def delete_mentions(self, study_ids) -> int:
        ids = set(study_ids)
        gone = [k for k, v in self.asserts.items() if v["study_id"] in ids]
        for k in gone:
            del self.asserts[k]
        self._done("delete_mentions")
        return len(gone)

    def upsert_mentions(self, mentions) -> int:
        rows = list(mentions)
        for r in rows:
            assert r["study_id"] in self.studies, "ASSERTS needs its Study node first"
            assert r["concept"] in self.concepts_, "ASSERTS needs its Concept node first"
            self.asserts[f"{r['study_id']}|{r['concept']}"] = dict(r)
        self._done("upsert_mentions")
        return len(rows)

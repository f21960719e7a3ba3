"""The evaluation set: the test split of a manifest (or an Open-i / MIMIC-style corpus).

Records are read with the ingest readers and normalised by the same
:func:`kgrag.ingest.pipeline.validate` that ``kgrag ingest`` uses, so ids, report text
and image paths mean the same here as in the home.  Only ``split: test`` studies are
kept for scoring; of the other rows only their ``style`` is read (to tell in-style
from out-of-style test studies under ``--shift``) and the names of their labels (the
label vocabulary), never their content.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgrag.errors import InputError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class EvalStudy:
    id: str
    report: str
    findings: str | None
    impression: str | None
    images: list[str]
    labels: dict[str, int]
    questions: list[dict[str, Any]]
    modality: str = "radiology"
    style: str | None = None
    site: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def positives(self, vocabulary: list[str]) -> set[str]:
        return {c for c in vocabulary if self.labels.get(c)}


@dataclass(slots=True)
class EvalSet:
    manifest: str
    studies: list[EvalStudy]
    #: concepts named by any row's labels; a study without a concept's key has it 0
    #: (Open-i MeSH labels list positives only)
    vocabulary: list[str]
    train_styles: list[str]
    n_rows: int
    n_errors: int
    split_counts: dict[str, int]
    truth: dict[str, Any] | None = None

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.studies]

    def info(self) -> dict[str, Any]:
        return {"manifest": self.manifest, "n_rows": self.n_rows, "n_errors": self.n_errors,
                "splits": self.split_counts, "n_test": len(self.studies), "vocabulary": self.vocabulary,
                "train_styles": self.train_styles,
                "synth_truth": None if self.truth is None else {k: self.truth.get(k) for k in ("seed", "n", "shift", "style")}}


def read_eval_set(manifest: str | Path, *, fmt: str | None = None, images_dir: str | Path | None = None,
                  max_report_chars: int = 20_000) -> EvalSet:
    """Read the corpus at ``manifest`` and keep its test split."""
    from kgrag.errors import RecordError
    from kgrag.ingest.pipeline import validate
    from kgrag.ingest.readers import read

    path = Path(manifest)
    studies, vocab, train_styles = [], set(), set()
    counts: dict[str, int] = {}
    n_rows = n_err = 0
    for rec in read(path, fmt, images_dir):
        n_rows += 1
        if rec.data is None:
            n_err += 1
            continue
        try:
            d = validate(rec, max_report_chars)
        except RecordError as e:
            n_err += 1
            log.warning("%s: %s", rec.ref, e)
            continue
        raw = rec.data
        style = raw.get("style") if raw.get("style") is not None else d["meta"].get("style")
        counts[d["split"]] = counts.get(d["split"], 0) + 1
        vocab.update(str(k) for k in (d["labels"] or {}))
        if d["split"] == "train" and style is not None:
            train_styles.add(str(style))
        if d["split"] != "test":
            continue
        studies.append(EvalStudy(
            id=d["id"], report=d["report"], findings=d["findings"], impression=d["impression"],
            images=list(d["image_paths"]), labels={str(k): int(bool(v)) for k, v in (d["labels"] or {}).items()},
            questions=list(d["questions"] or []), modality=d["modality"], style=None if style is None else str(style),
            site=None if raw.get("site") is None else str(raw["site"]), meta=d["meta"]))
    if not studies:
        raise InputError(f"{path} has no test-split studies ({counts or 'no readable rows'})",
                         fix="evaluate on a manifest with 'split': 'test' rows (kgrag synth and kgrag fetch write them)")
    truth = None
    t = path.parent / "truth.json"
    if path.is_file() and t.is_file():
        try:
            truth = json.loads(t.read_text())
        except (OSError, ValueError):
            truth = None
    return EvalSet(str(path), studies, sorted(vocab), sorted(train_styles), n_rows, n_err, counts, truth)

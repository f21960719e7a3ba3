"""MIMIC-CXR-style CSV: one row per study with the report text and image paths.

Columns (case-insensitive; first match wins): id = ``study_id`` | ``id``;
text = ``report`` | ``text``; optional ``findings``, ``impression``; images =
``image_paths`` | ``dicom_paths`` | ``path`` (``;``-separated); optional ``split``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from kgrag.ingest.readers.base import RawRecord

ID_COLS = ("study_id", "id")
TEXT_COLS = ("report", "text")
IMG_COLS = ("image_paths", "dicom_paths", "image_path", "path")


def _pick(row: dict[str, str], names: tuple[str, ...]) -> str | None:
    for n in names:
        if row.get(n):
            return row[n]
    return None


def read_csv(path: Path, images_dir: str | Path | None = None) -> Iterator[RawRecord]:
    import io

    base = Path(images_dir) if images_dir else path.parent
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        yield RawRecord(path.name, error=f"CSV is not UTF-8 (byte {e.start})", fix="re-encode the file as UTF-8", base_dir=base)
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if not any(c in header for c in ID_COLS):
        yield RawRecord(path.name, error=f"no id column (one of {ID_COLS}) in header {header}",
                        fix="name the study id column study_id", base_dir=base)
        return
    for i, row in enumerate(reader, 2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if isinstance(v, str) or v is None}
        ref = f"{path.name}:{i}"
        data: dict = {"id": _pick(row, ID_COLS)}
        text_ = _pick(row, TEXT_COLS)
        if text_:
            data["report"] = text_
        for k in ("findings", "impression", "split", "modality"):
            if row.get(k):
                data[k] = row[k]
        imgs = _pick(row, IMG_COLS)
        if imgs:
            data["images"] = [p.strip() for p in imgs.split(";") if p.strip()]
        yield RawRecord(ref, data=data, base_dir=base)

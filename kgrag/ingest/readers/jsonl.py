"""JSONL manifest reader (the contract in DESIGN.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from kgrag.ingest.readers.base import RawRecord


def read_jsonl(path: Path, images_dir: str | Path | None = None) -> Iterator[RawRecord]:
    base = Path(images_dir) if images_dir else path.parent
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            ref = f"{path.name}:{i}"
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield RawRecord(ref, error=f"line is not valid UTF-8 (byte {e.start})",
                                fix="re-encode the manifest as UTF-8", base_dir=base)
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as e:
                yield RawRecord(ref, error=f"bad JSON: {e.msg} at column {e.colno}", fix="fix the JSON on this line", base_dir=base)
                continue
            if not isinstance(data, dict):
                yield RawRecord(ref, error=f"expected a JSON object, got {type(data).__name__}",
                                fix="one study object per line", base_dir=base)
                continue
            yield RawRecord(ref, data=data, base_dir=base)

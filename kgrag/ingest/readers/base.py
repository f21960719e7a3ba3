"""The record every corpus reader yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class RawRecord:
    ref: str  # where it came from: "manifest.jsonl:12", "ecgen-radiology/1.xml"
    data: dict[str, Any] | None = None
    error: str | None = None
    fix: str | None = None
    base_dir: Path | None = None  # images are resolved against this
    extra: dict[str, Any] = field(default_factory=dict)

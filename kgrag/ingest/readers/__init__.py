"""Corpus readers.  Each yields :class:`RawRecord` items; parsing problems are
records with ``error`` set (the batch goes on)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from kgrag.errors import InputError
from kgrag.ingest.readers.base import RawRecord

FORMATS = ("jsonl", "openi", "mimic-csv")



def detect_format(source: str | Path) -> str:
    p = Path(source)
    name = p.name.lower()
    if p.is_dir():
        if any(p.glob("*.xml")) or (p / "ecgen-radiology").is_dir():
            return "openi"
        raise InputError(f"{p} is a directory without Open-i XML files", fix="pass a manifest .jsonl, a .csv, or an Open-i directory/.tgz")
    if name.endswith((".tgz", ".tar.gz", ".xml")):
        return "openi"
    if name.endswith(".csv"):
        return "mimic-csv"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    raise InputError(f"cannot tell the format of {p}", fix="pass --format jsonl|openi|mimic-csv")


def read(source: str | Path, fmt: str | None = None, images_dir: str | Path | None = None) -> Iterator[RawRecord]:
    fmt = fmt or detect_format(source)
    if not Path(source).exists():
        raise InputError(f"{source} does not exist", fix="check the path")
    if fmt == "jsonl":
        from kgrag.ingest.readers.jsonl import read_jsonl

        return read_jsonl(Path(source), images_dir)
    if fmt == "openi":
        from kgrag.ingest.readers.openi import read_openi

        return read_openi(Path(source), images_dir)
    if fmt == "mimic-csv":
        from kgrag.ingest.readers.mimic_csv import read_csv

        return read_csv(Path(source), images_dir)
    raise InputError(f"unknown format {fmt!r}", fix=f"use one of {FORMATS}")

"""Open-i (IU-Xray) XML: a directory of ``ecgen-radiology/*.xml`` or the
``NLMCXR_reports.tgz`` archive itself.

Kept: FINDINGS, IMPRESSION, INDICATION, COMPARISON; NLM MeSH *major* terms as
``labels`` through ``resources/mesh_map.json`` (the term's first component, or
the first two, e.g. ``Lung/hyperdistention``; unmapped terms are kept in
``meta.mesh``); image ids from ``parentImage``, resolved against ``--images``
as ``<id>.png``.  The files come from NLM and are parsed with the standard
library's ElementTree, which does not expand external entities.
"""

from __future__ import annotations

import json
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
from pathlib import Path

from kgrag.ingest.readers.base import RawRecord
from kgrag.ingest.splits import split_for


@lru_cache(maxsize=1)
def mesh_map() -> dict[str, str]:
    data = json.loads(resources.files("kgrag.resources").joinpath("mesh_map.json").read_text("utf-8"))
    return {k.lower(): v for k, v in data["map"].items()}


def mesh_to_concepts(terms: list[str]) -> dict[str, int]:
    m = mesh_map()
    out: dict[str, int] = {}
    for t in terms:
        parts = [p.strip().lower() for p in t.split("/")]
        for key in ("/".join(parts[:2]), parts[0]):
            if key in m:
                out[m[key]] = 1
                break
    return out


def parse_xml(text: bytes, ref: str) -> dict:
    root = ET.fromstring(text)
    sections: dict[str, str] = {}
    for a in root.iter("AbstractText"):
        label = (a.get("Label") or "").upper()
        if label in ("FINDINGS", "IMPRESSION", "INDICATION", "COMPARISON") and a.text and a.text.strip():
            sections[label.lower()] = a.text.strip()
    uid = root.find(".//uId")
    sid = uid.get("id") if uid is not None else None
    if not sid:
        pmc = root.find(".//pmcId")
        sid = f"CXR{pmc.get('id')}" if pmc is not None and pmc.get("id") else Path(ref).stem
    major = [m.text.strip() for m in root.iter("major") if m.text and m.text.strip()]
    images = [f"{p.get('id')}.png" for p in root.iter("parentImage") if p.get("id")]
    labels = mesh_to_concepts(major)
    if any(t.lower() == "normal" for t in major):
        labels["no_finding"] = 1
    return {
        "id": sid,
        "findings": sections.get("findings"),
        "impression": sections.get("impression"),
        "indication": sections.get("indication"),
        "comparison": sections.get("comparison"),
        "images": images,
        "labels": labels,
        "split": split_for(sid),  # the same R2Gen-style split as `kgrag fetch iu-xray` (seed 42)
        "meta": {"mesh": major},
    }


def _record(raw: bytes, ref: str, base: Path | None, has_images: bool) -> RawRecord:
    try:
        data = parse_xml(raw, ref)
    except ET.ParseError as e:
        return RawRecord(ref, error=f"bad XML: {e}", fix="re-extract the archive", base_dir=base)
    if not has_images:
        data["meta"]["image_ids"] = data.pop("images")
        data["images"] = []
    return RawRecord(ref, data=data, base_dir=base)


def read_openi(path: Path, images_dir: str | Path | None = None) -> Iterator[RawRecord]:
    base = Path(images_dir) if images_dir else None
    has_images = base is not None
    if path.is_file() and path.name.lower().endswith((".tgz", ".tar.gz")):
        with tarfile.open(path, "r:gz") as tf:
            members = sorted((m for m in tf.getmembers() if m.isfile() and m.name.endswith(".xml")), key=lambda m: m.name)
            for m in members:
                f = tf.extractfile(m)
                if f is not None:
                    yield _record(f.read(), m.name, base, has_images)
        return
    files = [path] if path.is_file() else sorted(path.rglob("*.xml"))
    for p in files:
        yield _record(p.read_bytes(), str(p.name), base, has_images)

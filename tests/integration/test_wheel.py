"""The built wheel carries every Cypher file and the package resources."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_wheel_contains_cypher_and_resources(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    wheels = list(tmp_path.glob("kgrag-*.whl"))
    assert len(wheels) == 1
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    expected = {str(p.relative_to(ROOT)) for p in (ROOT / "kgrag" / "cypher").rglob("*.cypher")}
    assert expected and expected <= names, sorted(expected - names)
    resources = {str(p.relative_to(ROOT)) for p in (ROOT / "kgrag" / "resources").rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts}
    assert resources <= names, sorted(resources - names)
    assert not any(n.startswith("tests/") for n in names)

"""The import graph: no module-level circles, and the layers contract of .importlinter."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _import_graph():
    grimp = pytest.importorskip("grimp")
    return grimp.build_graph("kgrag", exclude_type_checking_imports=True)


def test_no_import_cycles():
    import networkx as nx

    g = _import_graph()
    G = nx.DiGraph()
    for m in g.modules:
        G.add_node(m)
        for d in g.find_modules_directly_imported_by(m):
            G.add_edge(m, d)
    cycles = sorted(sorted(c) for c in nx.strongly_connected_components(G) if len(c) > 1)
    assert cycles == [], f"import cycles: {cycles}"


def test_layers_contract_names_every_package():
    """Every top-level module of kgrag sits in a layer, so a new package cannot dodge the rule."""
    cp = configparser.ConfigParser()
    cp.read(ROOT / ".importlinter")
    layers = cp["importlinter:contract:layers"]["layers"]
    named = {part.strip() for line in layers.splitlines() for part in line.replace(":", "|").split("|") if part.strip()}
    top = {f"kgrag.{p.stem}" for p in (ROOT / "kgrag").glob("*.py") if p.stem != "__init__"}
    top |= {f"kgrag.{p.name}" for p in (ROOT / "kgrag").iterdir()
            if p.is_dir() and (p / "__init__.py").exists() and p.name != "resources"}
    assert sorted(top - named) == []


def test_layers_contract_is_kept():
    import shutil
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("lint-imports")
    exe = str(exe) if exe.exists() else shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    r = subprocess.run([exe, "--config", str(ROOT / ".importlinter")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]

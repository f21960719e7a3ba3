"""Every Neo4j-dialect Cypher file passes Neo4j's own linter (zero errors)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from kgrag import cypher

LINT_DIR = Path(__file__).parents[1] / "neo4j_lint"


def _neo4j_statements():
    out = []
    for name in cypher.names("neo4j"):
        st = cypher.load(name, "neo4j")
        text = st.body.replace("{label}", "Finding")  # the allow-listed label placeholder
        out.append({"name": st.path, "text": text, "params": sorted(st.params)})
    return out


def test_neo4j_linter_passes_every_statement():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    if not (LINT_DIR / "node_modules" / "@neo4j-cypher" / "language-support").is_dir():
        pytest.fail("the Neo4j linter is not installed: run `make install` (npm install in tests/neo4j_lint)")
    stmts = _neo4j_statements()
    assert len(stmts) >= 15
    r = subprocess.run([node, "lint.mjs"], cwd=LINT_DIR, input=json.dumps(stmts), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)
    assert len(results) == len(stmts)
    errors = {x["name"]: x["errors"] for x in results if x["errors"]}
    assert not errors, json.dumps(errors, indent=1)


def test_linter_catches_a_bad_statement():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    bad = [{"name": "bad", "text": "MATCH (n:Concept RETURN n", "params": []},
           {"name": "undeclared", "text": "MATCH (n:Concept {id: $nope}) RETURN n", "params": []}]
    r = subprocess.run([node, "lint.mjs"], cwd=LINT_DIR, input=json.dumps(bad), capture_output=True, text=True, timeout=120)
    res = {x["name"]: x for x in json.loads(r.stdout)}
    assert res["bad"]["errors"]
    assert res["undeclared"]["errors"] or res["undeclared"]["warnings"]

"""The default test run (make test, and .ci/run which calls it) includes the reliability
and security suites; slow and neo4j stay opt-in."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from _pytest.mark.expression import Expression

ROOT = Path(__file__).resolve().parents[3]


def _pytest_cfg() -> configparser.SectionProxy:
    cp = configparser.ConfigParser()
    cp.read(ROOT / "setup.cfg")
    return cp["tool:pytest"]


def _default_selects(*markers: str) -> bool:
    m = re.search(r'-m\s+"([^"]+)"', _pytest_cfg()["addopts"])
    return True if m is None else Expression.compile(m.group(1)).evaluate(lambda name: name in markers)


def test_markers_are_registered():
    names = {ln.split(":")[0].strip() for ln in _pytest_cfg()["markers"].splitlines() if ln.strip()}
    assert {"integration", "reliability", "security", "slow", "neo4j"} <= names


def test_the_default_run_includes_reliability_and_security():
    assert _default_selects("reliability") and _default_selects("security")
    assert _default_selects("reliability", "integration")
    assert not _default_selects("slow") and not _default_selects("neo4j")


def test_make_test_and_ci_run_the_default_selection():
    make = (ROOT / "Makefile").read_text()
    recipe = make.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    pytest_lines = [ln for ln in recipe.splitlines() if "pytest" in ln]
    assert pytest_lines and not any(re.search(r"pytest\b.*\s-m\s", ln) for ln in pytest_lines), pytest_lines
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", ci, re.M)

import sys

import pytest

from kgrag.deps import require
from kgrag.errors import CypherError, KgragError, MissingDependencyError, redact


def test_redact_masks_secret_keys_recursively():
    out = redact({"password": "x", "nested": {"api_key": "y", "ok": 1}, "list": [{"token": "z"}]})
    assert out == {"password": "***", "nested": {"api_key": "***", "ok": 1}, "list": [{"token": "***"}]}


def test_cypher_error_names_statement_and_redacts():
    e = CypherError("upsert_edges", {"password": "hunter2", "rows": [1]}, "boom")
    assert "upsert_edges" in str(e)
    assert "hunter2" not in str(e)
    assert isinstance(e, KgragError)


def test_missing_dependency_names_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "neo4j", None)
    with pytest.raises(MissingDependencyError) as ei:
        require("neo4j")
    assert "kgrag[neo4j]" in str(ei.value)


def test_require_imports_present_module():
    assert require("json").dumps([1]) == "[1]"

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


ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]


def test_every_error_class_has_its_own_stable_code():
    from kgrag.errors import error_classes

    classes = error_classes()
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes)), f"duplicate codes: {codes}"
    assert all(__import__("re").fullmatch(r"E\d{3}", c) for c in codes)
    for c in classes:
        if c is not KgragError:
            assert "code" in vars(c), f"{c.__name__} inherits its parent's code"


def test_docs_errors_md_is_generated_from_the_code():
    from kgrag.errors import errors_markdown

    assert (ROOT / "docs" / "errors.md").read_text(encoding="utf-8") == errors_markdown(), \
        "regenerate it: python -m kgrag.errors > docs/errors.md"


def test_no_bare_kgrag_error_is_raised():
    import re

    hits = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "kgrag").rglob("*.py")
            for i, line in enumerate(p.read_text("utf-8").splitlines(), 1) if re.search(r"raise KgragError\(", line)]
    assert hits == []


def test_record_error_is_an_input_error_naming_the_record():
    from kgrag.errors import InputError, RecordError

    e = RecordError("missing 'id'", "give every record an id", record="manifest.jsonl:3")
    assert isinstance(e, InputError) and e.exit_code == 2 and e.code == "E301"
    assert e.message == "manifest.jsonl:3: missing 'id'" and e.fix == "give every record an id"


def test_cli_prints_the_code_and_the_fix(capsys, tmp_path):
    from kgrag.cli import main

    with pytest.raises(SystemExit) as ei:
        main(["query", "--home", str(tmp_path / "home"), "--question", "x"])
    err = capsys.readouterr().err
    assert ei.value.code != 0
    assert __import__("re").search(r"error E\d{3}: ", err), err

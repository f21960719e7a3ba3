from pathlib import Path

import pytest

from kgrag.config import load_settings
from kgrag.errors import ConfigError


def test_defaults(monkeypatch):
    monkeypatch.delenv("KGRAG_HOME", raising=False)
    s = load_settings()
    assert s.home == Path(".kgrag")
    assert s.graph.backend == "falkordb"
    assert s.kg.tau == 0.7
    assert s.retrieval.k == 10
    assert s.retrieval.damping == 0.85


def test_env_nesting(monkeypatch, tmp_path):
    monkeypatch.setenv("KGRAG_GRAPH__BACKEND", "neo4j")
    monkeypatch.setenv("KGRAG_NEO4J__URI", "neo4j://db.example:7687")
    monkeypatch.setenv("KGRAG_NEO4J__PASSWORD", "s3cret")
    monkeypatch.setenv("KGRAG_KG__TAU", "0.5")
    s = load_settings(tmp_path)
    assert s.graph.backend == "neo4j"
    assert s.neo4j.uri == "neo4j://db.example:7687"
    assert s.neo4j.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)
    assert s.kg.tau == 0.5
    assert s.home == tmp_path


def test_home_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("KGRAG_HOME", str(tmp_path / "h"))
    s = load_settings()
    assert s.home == tmp_path / "h"
    assert s.docstore_path == tmp_path / "h" / "docstore.sqlite"
    assert s.graph_dir == tmp_path / "h" / "graph"


def test_toml_in_home(tmp_path):
    (tmp_path / "kgrag.toml").write_text('[kg]\ntau = 0.9\n[retrieval]\nk = 7\n')
    s = load_settings(tmp_path)
    assert s.kg.tau == 0.9
    assert s.retrieval.k == 7


def test_env_beats_toml(tmp_path, monkeypatch):
    (tmp_path / "kgrag.toml").write_text("[kg]\ntau = 0.9\n")
    monkeypatch.setenv("KGRAG_KG__TAU", "0.3")
    assert load_settings(tmp_path).kg.tau == 0.3


def test_invalid_value_is_config_error(monkeypatch, tmp_path):
    monkeypatch.setenv("KGRAG_KG__TAU", "1.5")
    with pytest.raises(ConfigError) as ei:
        load_settings(tmp_path)
    assert "tau" in str(ei.value)
    assert ei.value.fix


def test_env_example_lists_every_setting():
    from kgrag.config import Settings

    example = (Path(__file__).parents[3] / ".env.example").read_text()
    names = []
    for group, field in Settings.model_fields.items():
        sub = getattr(field.annotation, "model_fields", None)
        if sub:
            names += [f"KGRAG_{group.upper()}__{k.upper()}" for k in sub]
        else:
            names.append(f"KGRAG_{group.upper()}")
    missing = [n for n in names if n not in example]
    assert not missing, f".env.example lacks {missing}"

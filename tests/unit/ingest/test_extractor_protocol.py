"""Extractors are chosen by settings and share one protocol."""

from kgrag.config import load_settings
from kgrag.ingest.extract import Extractor, RuleExtractor, make_extractor
from kgrag.ingest.llm_extractor import LLMExtractor


def test_make_extractor_follows_settings(tmp_path):
    rules = make_extractor(load_settings(tmp_path))
    assert isinstance(rules, RuleExtractor) and isinstance(rules, Extractor)
    s = load_settings(tmp_path, extractor={"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m"})
    llm = make_extractor(s)
    assert isinstance(llm, LLMExtractor) and isinstance(llm, Extractor)
    assert llm.version == "llm.v1:m" and llm.cache_dir == tmp_path / "cache" / "llm"

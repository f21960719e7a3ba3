"""Prompt templates and the transformers generator on a tiny random Llama-style model."""

import configparser
from pathlib import Path

import pytest
from _gen_bundles import bundle, closed

from kgrag.errors import InputError, ModelNotFoundError
from kgrag.generation.base import TASKS
from kgrag.generation.evidence import ParsedQuestion
from kgrag.generation.prompts import PLACEHOLDERS, build_prompt, load_template

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("task", TASKS)
def test_every_task_has_a_versioned_template(task):
    t = load_template(task)
    assert t.name == f"{task}.v1" and t.system and "{evidence}" in t.user


def test_templates_are_package_data():
    cp = configparser.ConfigParser()
    cp.read(ROOT / "setup.cfg")
    assert "generation/prompts/*.txt" in cp["options.package_data"]["kgrag"]
    assert len(list((ROOT / "kgrag" / "generation" / "prompts").glob("*.txt"))) == len(TASKS)


def test_prompt_carries_the_bundle_and_its_spans():
    b = bundle(closed("pleural_effusion", text="Is there pleural effusion?"))
    p = build_prompt(b, "closed_vqa")
    assert p.version == "closed_vqa.v1" and p.doc_ids == ["s1", "s2", "s3"] and p.relevance == pytest.approx([1.0, 0.5, 0.0])
    for sid, (a, z) in zip(p.doc_ids, p.doc_spans, strict=True):
        assert p.user[a:z].startswith(f"[{sid}] rank ")
    assert p.user[slice(*p.question_span)] == "Is there pleural effusion?"
    assert "Small right pleural effusion." in p.user and "- lung opacity: 0.90" in p.user  # evidence and V_I
    assert "- pleural effusion: 0.80" in p.user  # the posterior of the asked concept
    assert "lung opacity → consolidation → pneumonia (strength 0.36)" in p.user  # paths
    assert "do(lung opacity = absent): P(pneumonia) = 0.01" in p.user  # interventions
    assert "Consolidation: Replacement" in p.user and "[s1]" in p.system
    assert "{" not in p.user and "{" not in p.system
    msgs = p.messages(2)
    assert [c["type"] for c in msgs[1]["content"]] == ["image", "image", "text"]


def test_unknown_placeholder_is_refused(monkeypatch):
    from kgrag.generation import prompts

    assert "question" in PLACEHOLDERS
    with pytest.raises(InputError, match="no prompt for task"):
        prompts.load_template("poem")


def test_missing_model_path_names_the_setting(tmp_path):
    from kgrag.generation.hf import TransformersGenerator

    with pytest.raises(ModelNotFoundError, match="model path is not set") as e:
        TransformersGenerator(None).warm_up()
    assert "KGRAG_GENERATION__MODEL_PATH" in e.value.fix and "never downloads" in e.value.fix
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        TransformersGenerator(tmp_path / "nothing").warm_up()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("transformers")
    from _gen_tiny import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("m") / "tiny")


def test_transformers_generator_answers_every_task(tiny, capsys):
    from kgrag.generation.hf import TransformersGenerator

    g = TransformersGenerator(tiny, max_new_tokens=5, progress=True)
    a = g.generate(bundle(closed("pleural_effusion")))
    assert a.task == "closed_vqa" and a.yes_no in ("yes", "no") and 0.0 <= a.probability <= 1.0
    assert a.scheme == "lm.yes_no.v1" and a.generator["name"] == "transformers" and a.generator["model"] == "tiny"
    assert a.generator["prompt_version"] == "closed_vqa.v1" and a.generator["device"] == "cpu"
    assert "generating" in capsys.readouterr().err  # progress on stderr
    r = g.generate(bundle(), "report")
    assert r.task == "report" and r.probability is None and r.generator["prompt_version"] == "report.v1"
    d = g.generate(bundle(ParsedQuestion("What is the most likely diagnosis?", "diagnosis")))
    assert d.task == "diagnosis" and d.paths[0]["nodes"][-1] == "pneumonia"  # the graph's explanation of its top diagnosis


def test_greedy_is_deterministic_and_respects_max_tokens(tiny):
    from kgrag.generation.hf import TransformersGenerator

    g = TransformersGenerator(tiny, max_new_tokens=6)
    r1, r2 = g.run(bundle(), "report"), g.run(bundle(), "report")
    assert r1["text"] == r2["text"] and r1["n_new"] <= 6


def test_long_prompts_drop_the_least_relevant_documents(tmp_path):
    pytest.importorskip("transformers")
    from _gen_tiny import save_tiny_llama

    from kgrag.generation.hf import TransformersGenerator

    path = save_tiny_llama(tmp_path / "short", max_pos=1060)
    g = TransformersGenerator(path, max_new_tokens=4)
    enc = g._fit(bundle(), "report")
    assert enc["n_tokens"] + 4 <= 1060 and len(enc["prompt"].doc_ids) < 3
    assert enc["prompt"].doc_ids == ["s1", "s2", "s3"][: len(enc["prompt"].doc_ids)]


def test_citations_resolve_or_are_reported(tiny):
    from kgrag.generation.base import cited

    ok, bad = cited("Effusion [s1]. Opacity [V_I]. Made up [s99]. Again [s1].", bundle())
    assert ok == ["s1"] and bad == ["s99"]

"""The generator registry, the generation settings and the task of a bundle."""

import pytest
from _gen_bundles import bundle, closed

from kgrag.config import load_settings
from kgrag.errors import ConfigError, InputError, ModelNotFoundError
from kgrag.generation.base import GENERATORS, TASKS, Answer, check_task, make_generator, task_for
from kgrag.generation.evidence import ParsedQuestion


def test_generation_settings_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KGRAG_GENERATION__KIND", "http")
    monkeypatch.setenv("KGRAG_GENERATION__BASE_URL", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv("KGRAG_GENERATION__API_KEY", "sk-hidden")
    monkeypatch.setenv("KGRAG_GENERATION__IFA_LAYERS", "[-2, -1]")
    monkeypatch.setenv("KGRAG_GENERATION__IFA_LAMBDA", "0.5")
    s = load_settings(tmp_path)
    g = s.generation
    assert g.kind == "http" and g.ifa_layers == [-2, -1] and g.ifa_lambda == 0.5 and g.max_new_tokens == 256
    assert g.api_key.get_secret_value() == "sk-hidden" and "sk-hidden" not in repr(s)
    gen = make_generator(s)
    assert type(gen).__name__ == "HTTPGenerator" and "sk-hidden" not in repr(gen)
    monkeypatch.setenv("KGRAG_GENERATION__IFA_LAMBDA", "-1")
    with pytest.raises(ConfigError):
        load_settings(tmp_path)


def test_registry_builds_each_generator_without_loading_anything(tmp_path):
    s = load_settings(tmp_path)
    assert s.generation.kind == "grounded" and set(GENERATORS) == {"grounded", "transformers", "http"}
    assert make_generator(s).name == "grounded"
    t = make_generator(s, "transformers", model_path=tmp_path / "none")
    assert t.name == "transformers" and t.model_obj is None  # nothing loads before warm_up
    with pytest.raises(ModelNotFoundError, match="KGRAG_GENERATION__MODEL_PATH|no config.json"):
        t.warm_up()
    with pytest.raises(ConfigError, match="KGRAG_GENERATION__BASE_URL"):
        make_generator(s, "http").warm_up()
    with pytest.raises(InputError, match="unknown generator"):
        make_generator(s, "poet")


def test_task_of_a_bundle():
    assert task_for(bundle()) == "report"
    assert task_for(bundle(closed("pneumothorax"))) == "closed_vqa"
    assert task_for(bundle(ParsedQuestion("What is the diagnosis?", "diagnosis"))) == "diagnosis"
    for intent in ("findings", "location", "severity", "unparsed"):
        assert task_for(bundle(ParsedQuestion("?", intent))) == "open_vqa"
    assert check_task(None, bundle()) == "report" and set(TASKS) == {"report", "closed_vqa", "open_vqa", "diagnosis"}
    with pytest.raises(InputError, match="unknown generation task"):
        check_task("poem", bundle())


def test_answer_dict_rounds_probabilities():
    d = Answer("x", "yes", 0.123456789, 0.987654321).to_dict()
    assert d["probability"] == 0.123457 and d["posterior"] == 0.987654 and d["yes_no"] == "yes"


def test_explanation_of_an_observed_concept_is_what_it_explains_downstream():
    """A V_I concept is a soft root: nothing upstream moves it.  Its explanation is the
    paths from it to the diagnoses and do(concept = absent) on each diagnosis it moves."""
    from _gen_bundles import POSTERIORS

    from kgrag.generation.base import explanation
    from kgrag.generation.evidence import Counterfactual, Path, Posterior

    post = dict(POSTERIORS)
    post["heart_failure"] = Posterior("heart_failure", 0.40, (Path(("pleural_effusion", "heart_failure"), 0.30),
                                                              Path(("cardiomegaly", "heart_failure"), 0.06)),
                                      (Counterfactual({"pleural_effusion": 0}, 0.10), Counterfactual({"cardiomegaly": 0}, 0.35)))
    paths, cfs = explanation(bundle(closed("pleural_effusion"), posteriors=post), "pleural_effusion")
    assert paths == [{"nodes": ["pleural_effusion", "heart_failure"], "strength": 0.3}]
    assert [(c["do"], c["target"], c["probability"], c["baseline"]) for c in cfs] == [
        ({"pleural_effusion": 0}, "heart_failure", 0.1, 0.4)]
    # an inferred concept keeps the paths into it and the do() of its ancestors, largest change first
    paths, cfs = explanation(bundle(closed("pneumonia"), posteriors=post), "pneumonia")
    assert paths[0]["nodes"][-1] == "pneumonia"
    assert [c["do"] for c in cfs] == [{"lung_opacity": 0}, {"consolidation": 0}] and cfs[0]["target"] == "pneumonia"


def test_a_counterfactual_that_barely_moves_is_listed_but_not_written():
    from _gen_bundles import POSTERIORS

    from kgrag.generation.evidence import Counterfactual, Path, Posterior
    from kgrag.generation.grounded import GroundedGenerator

    post = dict(POSTERIORS)
    post["heart_failure"] = Posterior("heart_failure", 0.40, (Path(("pleural_effusion", "heart_failure"), 0.30),),
                                      (Counterfactual({"pleural_effusion": 0}, 0.398),))
    a = GroundedGenerator().generate(bundle(closed("pleural_effusion"), posteriors=post), "closed_vqa")
    assert [c["probability"] for c in a.counterfactuals] == [0.398]
    assert "do(pleural effusion = absent)" not in a.text
    post["heart_failure"] = Posterior("heart_failure", 0.40, (), (Counterfactual({"pleural_effusion": 0}, 0.10),))
    a = GroundedGenerator().generate(bundle(closed("pleural_effusion"), posteriors=post), "closed_vqa")
    assert "do(pleural effusion = absent) → P(congestive heart failure) = 0.10 (now 0.40)" in a.text

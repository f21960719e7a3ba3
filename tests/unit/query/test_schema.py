import pytest

from kgrag.errors import InputError
from kgrag.query.schema import validate_query_output


def _valid():
    return {"query": {}, "answer": None, "image_findings": [{"concept": "lung_opacity", "probability": 0.9}],
            "diagnoses": [{"concept": "pneumonia", "probability": 0.8, "paths": [{"nodes": ["a", "b"], "strength": 0.5}],
                           "counterfactual": [{"do": {"a": 0}, "probability": 0.1}]}],
            "evidence": [{"id": "s1", "rank": 1, "score": 0.7, "similarity": {"image_text": 0.4, "image_image": 0.7,
                          "text_text": None, "fused": 0.6}, "causal_loglik": -1.2, "sentences": ["x"]}],
            "config": {"alpha": 0.5, "k": 10, "graph_version": "g", "index_version": "i"}}


def test_schema_accepts_the_contract_and_names_the_first_violation():
    validate_query_output(_valid())
    bad = _valid()
    bad["evidence"][0]["similarity"]["fused"] = "high"
    with pytest.raises(InputError, match=r"\$\.evidence\[0\]\.similarity\.fused"):
        validate_query_output(bad)
    bad = _valid()
    del bad["config"]["graph_version"]
    with pytest.raises(InputError, match="graph_version"):
        validate_query_output(bad)
    bad = _valid()
    bad["diagnoses"][0]["probability"] = 1.5
    with pytest.raises(InputError):
        validate_query_output(bad)



def test_schema_wants_real_interventions():
    bad = _valid()
    bad["diagnoses"][0]["counterfactual"] = [{"remove": "a", "probability": 0.1}]  # an evidence ablation is not a do()
    with pytest.raises(InputError, match="do"):
        validate_query_output(bad)
    bad = _valid()
    bad["diagnoses"][0]["counterfactual"][0]["do"] = {"a": 0.5}
    with pytest.raises(InputError, match=r"counterfactual\[0\]\.do\.a"):
        validate_query_output(bad)

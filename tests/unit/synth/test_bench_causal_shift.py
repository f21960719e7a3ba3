"""The scores of benchmarks/bench_causal_shift.py against hand-computed values."""

import importlib
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("bench_causal_shift")
    finally:
        sys.path.remove(str(BENCH))


def test_balanced_accuracy_and_accuracy(bench):
    y = [1, 1, 1, 0, 0, 0, 0, 0]
    pred = [1, 0, 0, 0, 0, 0, 1, 1]
    # sensitivity 1/3, specificity 3/5 -> (1/3 + 3/5) / 2 = 0.4666...
    assert bench.balanced_accuracy(y, pred) == pytest.approx((1 / 3 + 3 / 5) / 2, abs=1e-12)
    assert bench.accuracy(y, pred) == pytest.approx(4 / 8)
    assert bench.balanced_accuracy(y, [0] * 8) == 0.5  # always "no"
    assert math.isnan(bench.balanced_accuracy([0, 0], [0, 1]))


def test_vote_and_majority(bench):
    asr = {"s1": {"pneumonia": "present"}, "s2": {"pneumonia": "absent"}, "s3": {"pneumonia": "uncertain"},
           "s4": {"pneumonia": "present"}}
    assert bench.vote_fraction(["s1", "s2", "s3", "s4"], asr, "pneumonia") == 0.5
    assert bench.vote_fraction(["s1", "s4", "s9"], asr, "pneumonia") == pytest.approx(2 / 3)  # s9 asserts nothing
    assert bench.majority(0.5) == 0 and bench.majority(0.6) == 1
    assert bench.vote_fraction([], asr, "pneumonia") == 0.0


def test_auc_counts_ties_as_half(bench):
    # positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4) 1, (0.8>0.1) 1, (0.4=0.4) 0.5, (0.4>0.1) 1 -> 3.5/4
    assert bench.auc([1, 1, 0, 0], [0.8, 0.4, 0.4, 0.1]) == pytest.approx(0.875)
    assert bench.auc([1, 0], [0.0, 0.0]) == 0.5
    assert math.isnan(bench.auc([1, 1], [0.2, 0.3]))


def test_visible_diagnoses_follow_generative_paths(bench):
    edges = [("d1", "f1", 0.5), ("f1", "img", 0.9), ("d2", "f2", 0.5), ("d3", "img", 0.3)]
    assert bench.visible_diagnoses(edges, {"img"}, ["d1", "d2", "d3", "d4"]) == ["d1", "d3"]
    from kgrag.synth import model, phantom_b

    vis = bench.visible_diagnoses(model.EDGES, set(phantom_b.DRAWN), sorted(model.PRIORS))
    assert vis == ["copd", "granuloma", "heart_failure", "pneumonia"]  # fracture, hiatal hernia, scoliosis: no sign

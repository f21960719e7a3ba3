"""Calibration of the findings head (Platt / temperature, ECE) and the V_I selection."""

import math

import numpy as np
import pytest

from kgrag.model import calibration as cal
from kgrag.model.train import calibrate_head, select_visible


def test_ece_by_hand():
    # bins of width 0.1: 0.9 and 0.95 → bin 9 (y mean 1, q mean 0.925), 0.2 → bin 2, 0.65 → bin 6
    y, q = [1, 0, 1, 1], [0.9, 0.2, 0.65, 0.95]
    want = 2 / 4 * 0.075 + 1 / 4 * 0.2 + 1 / 4 * 0.35
    assert cal.ece(y, q) == pytest.approx(want, abs=1e-12)
    assert cal.ece_reference(y, q) == pytest.approx(want, abs=1e-12)
    assert cal.ece([1, 0], [1.0, 0.0]) == 0.0  # q = 1 falls in the last bin
    assert math.isnan(cal.ece([], []))


def test_ece_matches_reference_on_random_data():
    rng = np.random.default_rng(0)
    q = rng.random(500)
    y = (rng.random(500) < q ** 2).astype(float)
    assert cal.ece(y, q) == pytest.approx(cal.ece_reference(y.tolist(), q.tolist()), abs=1e-12)


def _miscalibrated(n, seed):
    """Labels drawn from σ(t); the head reports z = 3t + 1 (overconfident and shifted)."""
    rng = np.random.default_rng(seed)
    t = rng.normal(0, 1.5, n)
    y = (rng.random(n) < cal.sigmoid(t)).astype(float)
    return 3 * t + 1, y


def test_platt_recovers_the_planted_scaling_and_lowers_ece_out_of_sample():
    z, y = _miscalibrated(20_000, 1)
    s = cal.fit(z, y, "platt")
    assert s.a == pytest.approx(1 / 3, abs=0.03) and s.b == pytest.approx(-1 / 3, abs=0.05)
    z2, y2 = _miscalibrated(5_000, 2)  # fresh data: the fit is not measured on itself
    raw, after = cal.ece(y2, cal.sigmoid(z2)), cal.ece(y2, s.apply(z2))
    assert raw > 0.08 and after < 0.02 and after < raw / 4


def test_temperature_scaling_has_no_offset_and_lowers_ece():
    z, y = _miscalibrated(5_000, 3)
    s = cal.fit(z - 1, y, "temperature")  # remove the shift: a pure temperature problem
    assert s.b == 0.0 and s.a == pytest.approx(1 / 3, abs=0.04)
    assert cal.ece(y, s.apply(z - 1)) < cal.ece(y, cal.sigmoid(z - 1)) / 3


def test_cross_fitted_ece_after_is_lower_on_a_miscalibrated_head():
    z, y = _miscalibrated(2_000, 4)
    raw, after = cal.cross_fitted(z, y, "platt", seed=0)
    assert raw == pytest.approx(cal.ece(y, cal.sigmoid(z)))
    assert after < raw / 2


def test_fit_edge_cases():
    assert cal.fit([0.1, 0.2], [1, 1]).to_dict() == {"a": 1.0, "b": 0.0, "method": "platt"}  # one class: identity
    s = cal.fit([-2, -1, 1, 2], [1, 1, 0, 0])  # anti-correlated: the ranking is never reversed
    assert s.a == 0.0
    s = cal.fit([-1, 1], [0, 1])  # separable: the ridge keeps it finite
    assert math.isfinite(s.a) and s.a > 1
    with pytest.raises(ValueError):
        cal.fit([0.0], [1.0], "isotonic")


def test_select_visible_by_hand():
    vis, exc = select_visible({"a": 0.8, "b": 0.55, "c": None, "d": 0.6}, 0.6, {"c": (0, 12)})
    assert vis == ["a", "d"]
    assert set(exc) == {"b", "c"}
    assert "0.550 < 0.6" in exc["b"] and "cannot see" in exc["b"]
    assert "0 present, 12 absent" in exc["c"]


def test_calibrate_head_excludes_what_it_cannot_see():
    rng = np.random.default_rng(5)
    n = 400
    y = np.stack([rng.random(n) < 0.3, rng.random(n) < 0.3, np.zeros(n, bool)], axis=1).astype(np.float32)
    logits = np.stack([4 * y[:, 0] - 2 + rng.normal(0, 1, n),  # sees concept 0
                       rng.normal(0, 1, n),  # pure noise for concept 1
                       rng.normal(0, 1, n)], axis=1)  # concept 2: never present in val
    mask = np.ones_like(y)
    mask[:50, 0] = 0  # hedged mentions are left out of AUC and calibration
    scal, stats, vis, exc = calibrate_head(logits, y, mask, ["seen", "noise", "never"], min_auc=0.6)
    assert vis == ["seen"] and set(exc) == {"noise", "never"}
    assert stats["seen"]["auc"] > 0.9 and stats["noise"]["auc"] < 0.6 and stats["never"]["auc"] is None
    assert stats["seen"]["n_present"] + stats["seen"]["n_absent"] == n - 50
    assert stats["seen"]["ece_calibrated"] < stats["seen"]["ece_raw"]
    assert stats["seen"]["in_vi"] and not stats["noise"]["in_vi"] and "excluded" in stats["noise"]
    assert scal["never"].a == 1.0 and stats["never"]["ece_raw"] is None

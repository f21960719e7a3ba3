"""Symmetric InfoNCE: NumPy reference and torch loss against a hand-computed toy batch."""

import math

import numpy as np
import pytest
import torch

from kgrag.model.encoders import l2n
from kgrag.model.losses import info_nce, info_nce_reference, temperature

IMG = np.array([[1.0, 0.0], [0.0, 1.0]])
TXT = np.array([[1.0, 0.0], [0.6, 0.8]])
# T = 1: logits = IMG·TXTᵀ = [[1, 0.6], [0, 0.8]]
# image→text rows:  -log(e^1 / (e^1 + e^0.6)) = log(1 + e^-0.4);  -log(e^0.8 / (e^0 + e^0.8)) = log(1 + e^-0.8)
# text→image rows (logitsᵀ = [[1, 0], [0.6, 0.8]]): log(1 + e^-1);  log(1 + e^-0.2)
# loss = ½ (mean of the first two + mean of the last two)
HAND = (math.log(1 + math.exp(-0.4)) + math.log(1 + math.exp(-0.8))
        + math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(-0.2))) / 4


def test_toy_batch_by_hand():
    assert HAND == pytest.approx(0.448879, abs=1e-6)
    assert info_nce_reference(IMG, TXT, 1.0) == pytest.approx(HAND, rel=1e-12)
    got = info_nce(torch.tensor(IMG, dtype=torch.float32), torch.tensor(TXT, dtype=torch.float32), torch.tensor(0.0))
    assert float(got) == pytest.approx(HAND, rel=1e-6)


def test_identity_batch_with_temperature_half():
    eye = np.eye(2)
    # logits = I / 0.5 = [[2, 0], [0, 2]]; every row: -log(e^2 / (e^2 + 1))
    expected = -math.log(math.e**2 / (math.e**2 + 1))
    assert info_nce_reference(eye, eye, 0.5) == pytest.approx(expected)
    got = info_nce(torch.eye(2), torch.eye(2), torch.tensor(math.log(2.0)))
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_torch_matches_reference_on_random_batch():
    rng = np.random.default_rng(0)
    a, b = l2n(rng.standard_normal((7, 8))), l2n(rng.standard_normal((7, 8)))
    t = torch.tensor(math.log(1 / 0.07))
    assert float(info_nce(torch.tensor(a), torch.tensor(b), t)) == pytest.approx(info_nce_reference(a, b, 0.07), rel=1e-5)


def test_temperature_is_learned_and_clamped():
    p = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    loss = info_nce(torch.tensor(IMG, dtype=torch.float32), torch.tensor(TXT, dtype=torch.float32), p)
    loss.backward()
    assert p.grad is not None and float(p.grad) != 0.0
    assert temperature(p) == pytest.approx(0.07)
    big = torch.tensor(math.log(1000.0))  # T would be 0.001; clamped to 0.01
    assert temperature(big) == pytest.approx(0.01)
    assert float(info_nce(torch.eye(2), torch.eye(2), big)) == pytest.approx(info_nce_reference(np.eye(2), np.eye(2), 0.01), rel=1e-5)

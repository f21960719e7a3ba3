import hashlib
import json

import numpy as np
import pytest

from kgrag.synth import model
from kgrag.synth.generate import generate, make_study


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_deterministic_and_prefix_stable(tmp_path):
    a = generate(tmp_path / "a", 30, seed=3, progress=False)
    b = generate(tmp_path / "b", 30, seed=3, progress=False)
    c = generate(tmp_path / "c", 30, seed=4, progress=False)
    assert a.manifest_sha256 == b.manifest_sha256 != c.manifest_sha256
    assert _sha(tmp_path / "a/img/syn-00007.png") == _sha(tmp_path / "b/img/syn-00007.png")
    d = generate(tmp_path / "d", 40, seed=3, progress=False)
    first30 = (tmp_path / "d/manifest.jsonl").read_text().splitlines()[:30]
    assert first30 == (tmp_path / "a/manifest.jsonl").read_text().splitlines()
    assert d.n == 40


def test_manifest_contract_and_truth(tmp_path):
    generate(tmp_path, 20, seed=1, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    for r in rows:
        assert r["id"].startswith("syn-") and r["split"] in ("train", "val", "test")
        assert r["findings"] and r["impression"] and r["modality"] == "radiology"
        assert (tmp_path / r["images"][0]).is_file()
        assert all(q["answer"] in ("yes", "no") for q in r["questions"])
    truth = json.loads((tmp_path / "truth.json").read_text())
    gen = {(e["src"], e["dst"]) for e in truth["generative_edges"]}
    reader = {(e["src"], e["dst"]) for e in truth["reader_edges"]}
    assert reader == {(d, s) for s, d in gen}
    assert ("consolidation", "pneumonia") in reader


def _labels(n, seed=11, shift=False):
    return [make_study(seed, i, shift, with_image=False)[0] for i in range(n)]


def test_frequencies_follow_the_true_model():
    rows = _labels(3000)
    freq = lambda k, cond=lambda r: True: np.mean([r["labels"][k] for r in rows if cond(r)])  # noqa: E731
    assert freq("pneumonia") == pytest.approx(model.PRIORS["pneumonia"], abs=0.025)
    # P(consolidation | pneumonia) = 1 - (1 - 0.03)(1 - 0.8) = 0.806
    assert freq("consolidation", lambda r: r["labels"]["pneumonia"]) == pytest.approx(0.806, abs=0.06)
    # P(consolidation | no pneumonia) = leak 0.03
    assert freq("consolidation", lambda r: not r["labels"]["pneumonia"]) == pytest.approx(0.03, abs=0.015)
    # P(enlarged_cardiomediastinum | cardiomegaly) = 1 - 0.97 * 0.1 = 0.903
    assert freq("enlarged_cardiomediastinum", lambda r: r["labels"]["cardiomegaly"]) == pytest.approx(0.903, abs=0.06)


def test_shift_reverses_the_confounder():
    def corr(rows, split):
        sel = [r for r in rows if r["split"] == split]
        hf = [r["site"] == "B" for r in sel if r["labels"]["heart_failure"]]
        no = [r["site"] == "B" for r in sel if not r["labels"]["heart_failure"]]
        return np.mean(hf) - np.mean(no)

    plain = _labels(2500, shift=False)
    shifted = _labels(2500, shift=True)
    assert corr(plain, "train") > 0.4 and corr(plain, "test") > 0.4
    assert corr(shifted, "train") > 0.4 and corr(shifted, "test") < -0.4


def test_images_carry_the_signs():
    from kgrag.synth import phantom

    rng = np.random.default_rng(0)
    base = {k: 0 for k in model.LEAKS}
    normal = [phantom.draw(base, "A", np.random.default_rng(i)) for i in range(10)]
    big = [phantom.draw({**base, "enlarged_cardiomediastinum": 1}, "A", np.random.default_rng(i)) for i in range(10)]
    assert normal[0].shape == (128, 128) and normal[0].dtype == np.float32
    assert 0.0 <= normal[0].min() and normal[0].max() <= 1.0
    # heart width: bright pixels in the heart row band
    width = lambda im: (im[80:90] > 0.6).sum()  # noqa: E731
    assert np.mean([width(x) for x in big]) > 1.3 * np.mean([width(x) for x in normal])
    site_b = phantom.draw(base, "B", rng)
    assert site_b[3:9, 3:9].mean() > 0.7


def test_reports_negate_absent_concepts():
    rows = _labels(50)
    assert sum("No " in r["findings"] or "no " in r["findings"] for r in rows) >= 45
    assert any("PORTABLE AP VIEW." in r["findings"] for r in rows if r["site"] == "B")

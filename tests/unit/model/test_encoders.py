"""Encoders: shapes, normalization, determinism, pooling, offline text model, data helpers."""

import math

import numpy as np
import pytest
import torch

from kgrag import imaging
from kgrag.errors import InputError, ModelNotFoundError
from kgrag.model import data
from kgrag.model.cnn import LPA, MSPP, ImageEncoder, TextProjection
from kgrag.model.encoders import (
    Encoder,
    HashEncoder,
    fingerprint_of,
    l2n,
)


def _unit_rows(v, dim, n):
    assert v.shape == (n, dim) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_hash_encoder_deterministic_normalized_and_seeded():
    texts = ["No pleural effusion.", "Cardiomegaly.", ""]
    a = HashEncoder(dim=32, seed=1).encode_texts(texts)
    b = HashEncoder(dim=32, seed=1).encode_texts(texts)
    c = HashEncoder(dim=32, seed=2).encode_texts(texts)
    _unit_rows(a, 32, 3)
    assert np.array_equal(a, b) and not np.allclose(a[:2], c[:2])
    rng = np.random.default_rng(0)
    imgs = [rng.random((64, 64), dtype=np.float32), rng.random((128, 100), dtype=np.float32), np.zeros((8, 8), np.float32)]
    e = HashEncoder(dim=32, seed=1)
    _unit_rows(e.encode_images(imgs), 32, 3)
    assert np.array_equal(e.encode_images(imgs), HashEncoder(dim=32, seed=1).encode_images(imgs))
    assert e.encode_images([]).shape == (0, 32)
    assert isinstance(e, Encoder) and fingerprint_of(e) == "hash-32-1"


def test_hash_encoder_text_is_signed_token_hashing():
    e = HashEncoder(dim=16, seed=0)
    j, sign = e._token_slot("effusion")
    v = e.encode_texts(["effusion effusion"])[0]
    expected = np.zeros(16, np.float32)
    expected[j] = sign  # two equal tokens → 2·sign in one slot, normalized to ±1
    assert np.allclose(v, expected)


@pytest.mark.parametrize("pooling", ["gap", "lpa", "mspp"])
def test_cnn_each_pooling_shapes_and_normalization(pooling):
    torch.manual_seed(0)
    enc = ImageEncoder(embed_dim=256, n_findings=5, pooling=pooling, width=8)
    z, logits = enc(torch.rand(3, 1, 128, 128))
    assert z.shape == (3, 256) and logits.shape == (3, 5)
    assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)
    assert enc.feat_dim == 32 * (21 if pooling == "mspp" else 1)  # 4·width channels (×21 for the pyramid)


def test_cnn_rejects_unknown_pooling():
    with pytest.raises(ValueError, match="pooling"):
        ImageEncoder(pooling="max")


def test_lpa_weights_are_a_softmax_over_positions():
    torch.manual_seed(0)
    x = torch.rand(2, 4, 8, 8)
    lpa = LPA(4)
    w = lpa.weights(x)
    assert w.shape == (2, 1, 8, 8)
    assert torch.allclose(w.sum(dim=(1, 2, 3)), torch.ones(2))
    assert (w > 0).all()
    # by hand: score = conv1x1(x) = Σ_c W_c x_c + b; weights = softmax over the 64 positions
    W, b = lpa.score.weight.view(4), lpa.score.bias
    s = (x * W.view(1, 4, 1, 1)).sum(1) + b
    hand = torch.softmax(s.view(2, -1), dim=1).view(2, 1, 8, 8)
    assert torch.allclose(w, hand, atol=1e-6)
    assert torch.allclose(lpa(x), (x * hand).sum(dim=(2, 3)), atol=1e-6)


def test_lpa_uniform_scores_equal_global_average():
    x = torch.rand(2, 3, 4, 4)
    lpa = LPA(3)
    with torch.no_grad():
        lpa.score.weight.zero_()
        lpa.score.bias.fill_(0.3)
    assert torch.allclose(lpa(x), x.mean(dim=(2, 3)), atol=1e-6)


def test_mspp_pyramid_values():
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    m = MSPP()(x)
    assert m.shape == (1, 1 + 4 + 16)
    assert m[0, 0] == pytest.approx(7.5)  # mean of 0..15
    # 2×2 level: top-left quadrant {0, 1, 4, 5} → 2.5; top-right {2, 3, 6, 7} → 4.5; bottom: 10.5, 12.5
    assert m[0, 1:5].tolist() == pytest.approx([2.5, 4.5, 10.5, 12.5])
    assert m[0, 5:].tolist() == pytest.approx(list(range(16)))


def test_text_projection_normalized():
    p = TextProjection(384, 256)
    z = p(torch.rand(4, 384))
    assert z.shape == (4, 256) and torch.allclose(z.norm(dim=1), torch.ones(4), atol=1e-5)


def test_sentence_encoder_offline_minilm():
    from kgrag.model.encoders import SentenceTextEncoder

    e = SentenceTextEncoder()
    v = e.encode_texts(["Small left pleural effusion.", "Left pleural effusion, small.", "Fractured femur."])
    _unit_rows(v, 384, 3)
    assert v[0] @ v[1] > v[0] @ v[2]
    assert e.encode_texts([]).shape == (0, 384)
    with pytest.raises(InputError, match="does not encode images"):
        e.encode_images([np.zeros((4, 4), np.float32)])


def test_unknown_models_are_clear_errors(tmp_path):
    from kgrag.model.encoders import resolve_text_model

    with pytest.raises(ModelNotFoundError, match="local path") as ei:
        resolve_text_model("some-org/some-model")
    assert "KGRAG_MODELS__TEXT_ENCODER" in str(ei.value)
    assert resolve_text_model(str(tmp_path)) == str(tmp_path)


def test_l2n_keeps_zero_rows():
    v = l2n(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(v, [[0.6, 0.8], [0.0, 0.0]])


# -- data helpers --------------------------------------------------------------------------
def test_augment_identity_when_disabled_and_shift_by_hand():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 16, 16)
    assert torch.allclose(data.augment(x, g, max_shift=0, contrast=0.0, brightness=0.0), x)
    y = data.augment(x, g)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    # a single bright pixel moves by at most MAX_SHIFT in each direction
    z = torch.zeros(1, 1, 16, 16)
    z[0, 0, 8, 8] = 1.0
    out = data.augment(z, torch.Generator().manual_seed(3), contrast=0.0, brightness=0.0)
    (r, c), = torch.nonzero(out[0, 0] > 0.5).tolist()
    assert abs(r - 8) <= data.MAX_SHIFT and abs(c - 8) <= data.MAX_SHIFT and out.sum() == 1.0


def test_acquisition_identity_when_disabled_then_each_part_by_hand():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 16, 16)
    off = {"scale": 0.0, "aspect": 0.0, "gamma": 0.0, "blur_p": 0.0, "noise": 0.0}
    assert torch.equal(data.acquisition(x, g, **off), x)
    y = data.acquisition(x, g)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1 and not torch.equal(y, x)
    # a constant film stays constant under zoom (border fill), gamma only moves its level
    flat = torch.full((2, 1, 16, 16), 0.25)
    z = data.acquisition(flat, g, **{**off, "scale": 0.2, "aspect": 0.1})
    assert torch.allclose(z, flat, atol=1e-6)
    z = data.acquisition(flat, torch.Generator().manual_seed(1), **{**off, "gamma": 0.5})
    for img in z:  # 0.25 ** exp(u/2), u in [-1, 1]
        v = float(img.mean())
        assert torch.allclose(img, torch.full_like(img, v)) and 0.25 ** math.exp(0.5) - 1e-6 <= v <= 0.25 ** math.exp(-0.5) + 1e-6
    # the blur always on: a point becomes the [1 4 6 4 1]/16 outer product, mass kept
    pt = torch.zeros(1, 1, 16, 16)
    pt[0, 0, 8, 8] = 1.0
    b = data.acquisition(pt, g, **{**off, "blur_p": 1.0})
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    assert torch.allclose(b[0, 0, 6:11, 6:11], torch.outer(k, k)) and abs(float(b.sum()) - 1.0) < 1e-6


def test_encoder_standardizes_each_film():
    from kgrag.model.cnn import standardize_images

    x = torch.rand(3, 1, 16, 16)
    s = standardize_images(x)
    assert torch.allclose(s.mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(s.std(dim=(1, 2, 3)), torch.ones(3) * x.std(dim=(1, 2, 3)) / (x.std(dim=(1, 2, 3)) + 1e-3), atol=1e-5)
    torch.manual_seed(0)
    enc = ImageEncoder(embed_dim=16, n_findings=2, width=8).eval()
    # exposure and gain do not reach the network: a*x + b gives the same output
    with torch.no_grad():
        z1, l1 = enc(x)
        z2, l2 = enc(0.5 * x + 0.2)
    assert torch.allclose(z1, z2, atol=1e-3) and torch.allclose(l1, l2, atol=1e-3)
    assert not ImageEncoder(embed_dim=16, n_findings=2, width=8, standardize=False).standardize


def test_balance_weights_remove_the_group_label_association_by_hand():
    # one finding; site A: 3 labelled, 2 positive; site B: 3 labelled, 0 positive, 1 masked
    y = np.array([[1], [1], [0], [0], [0], [0], [0]], np.float32)
    m = np.array([[1], [1], [1], [1], [1], [1], [0]], np.float32)
    g = ["A", "A", "A", "B", "B", "B", "B"]
    w = data.balance_weights(g, y, m)
    p_all = (2 + 1) / (6 + 2)                     # 0.375
    pa, pb = (2 + 1) / (3 + 2), (0 + 1) / (3 + 2)  # 0.6, 0.2
    assert w[:, 0].tolist() == pytest.approx([p_all / pa, p_all / pa, (1 - p_all) / (1 - pa)]
                                             + [(1 - p_all) / (1 - pb)] * 4, abs=1e-6)
    # on a large sample the weighted positive rate is the same in every group (the association is gone)
    rng = np.random.default_rng(0)
    gs = rng.choice(["A", "B", "C"], 3000)
    yl = (rng.random(3000) < np.select([gs == "A", gs == "B"], [0.5, 0.2], 0.05)).astype(np.float32)[:, None]
    wl = data.balance_weights(list(gs), yl, np.ones_like(yl))[:, 0]
    rates = [float((wl * yl[:, 0])[gs == k].sum() / wl[gs == k].sum()) for k in "ABC"]
    assert max(rates) - min(rates) < 0.01 and abs(rates[0] - yl.mean()) < 0.01
    # one group (or no key): no reweighting; extreme groups are clipped
    assert (data.balance_weights(["A"] * 7, y, m) == 1).all() and (data.balance_weights([None] * 7, y, m) == 1).all()
    y2 = np.array([[1]] * 200 + [[0]] * 200, np.float32)
    w2 = data.balance_weights(["A"] * 200 + ["B"] * 200, y2, np.ones_like(y2))
    assert w2.max() <= data.MAX_BALANCE_WEIGHT and w2.min() >= 1 / data.MAX_BALANCE_WEIGHT


def test_finding_labels_present_absent_uncertain_unmentioned():
    sc = {"a": {"nodule": "present", "mass": "absent"}, "b": {"nodule": "uncertain"}}
    y, m = data.finding_labels(["a", "b", "c"], sc, ["nodule", "mass"])
    assert y.tolist() == [[1, 0], [0, 0], [0, 0]]
    assert m.tolist() == [[1, 1], [0, 1], [1, 1]]  # only the hedged mention is masked
    # unmentioned masked: only stated concepts (present or absent) teach the head
    y, m = data.finding_labels(["a", "b", "c"], sc, ["nodule", "mass"], unmentioned="masked")
    assert y.tolist() == [[1, 0], [0, 0], [0, 0]]
    assert m.tolist() == [[1, 1], [0, 0], [0, 0]]
    with pytest.raises(InputError, match="unmentioned"):
        data.finding_labels(["a"], sc, ["nodule"], unmentioned="zero")


def test_query_questions_phrase_concepts_like_manifests():
    assert data.question_for("pleural_effusion") == "Is there pleural effusion?"
    assert data.question_for("cardiomegaly") == "Is the heart enlarged?"  # the corpus's own wording
    assert data.question_for("atelectasis") == "Is there atelectasis?"  # catalogue name otherwise
    rng = np.random.default_rng(0)
    vocab = ["nodule", "edema", "cardiomegaly", "pneumonia"]
    sets = [{"nodule"}, set(), {"edema", "cardiomegaly"}] * 100
    qs = data.query_questions(sets, vocab, rng)
    phrased = {data.question_for(c): c for c in vocab}
    assert len(qs) == 300 and set(qs) <= set(phrased)
    own = [phrased[q] in s for q, s in zip(qs, sets, strict=True)]
    assert 0.35 < np.mean(own[0::3]) < 0.65 and 0.35 < np.mean(own[2::3]) < 0.65  # half what it has, half not
    assert not any(own[1::3])  # a normal study is asked about something it lacks


def test_present_sets_and_overlap_pairs():
    sc = {"a": {"nodule": "present", "no_finding": "present"}, "b": {"nodule": "present", "mass": "present"}, "c": {}}
    sets = data.present_sets(["a", "b", "c"], sc)
    assert sets == [{"nodule"}, {"nodule", "mass"}, set()]
    t = data.overlap_pairs(sets, sets, 200, np.random.default_rng(0), same_pool=True)
    from kgrag.model.fusion import jaccard

    assert len(t) > 0
    for q, better, worse in t:
        assert q not in (better, worse)
        assert jaccard(sets[q], sets[better]) > jaccard(sets[q], sets[worse])


def test_load_split_refuses_test_split():
    class DS:
        def studies(self, split=None):
            raise AssertionError("must not be read")

    with pytest.raises(InputError, match="test"):
        data.load_split(DS(), "test")
    with pytest.raises(InputError, match="test"):
        data.split_concepts(DS(), ("train", "test"))


def test_resize_image_rejects_non_2d():
    assert imaging.resize_image(np.ones((10, 20), np.float32), 8).shape == (8, 8)
    with pytest.raises(InputError):
        imaging.resize_image(np.ones((2, 2, 2, 2), np.float32))

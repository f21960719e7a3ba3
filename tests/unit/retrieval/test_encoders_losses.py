import math

import numpy as np
import pytest
import torch

from kgrag.retrieval.cnn import LPA, MSPP, ImageEncoder, TextProjection
from kgrag.retrieval.encoders import HashEncoder, l2n
from kgrag.retrieval.losses import info_nce, info_nce_reference


def test_hash_encoder_deterministic_and_normalized():
    e = HashEncoder(dim=32, seed=1)
    a = e.encode_texts(["No pleural effusion.", "Cardiomegaly."])
    b = HashEncoder(dim=32, seed=1).encode_texts(["No pleural effusion.", "Cardiomegaly."])
    assert a.shape == (2, 32) and a.dtype == np.float32
    assert np.allclose(a, b) and np.allclose(np.linalg.norm(a, axis=1), 1.0)
    im = e.encode_images([np.random.default_rng(0).random((64, 64), dtype=np.float32)])
    assert im.shape == (1, 32) and np.isclose(np.linalg.norm(im), 1.0)


@pytest.mark.parametrize("pooling", ["gap", "lpa", "mspp"])
def test_cnn_shapes_and_normalization(pooling):
    torch.manual_seed(0)
    enc = ImageEncoder(embed_dim=256, n_findings=5, pooling=pooling, width=8)
    z, logits = enc(torch.rand(3, 1, 128, 128))
    assert z.shape == (3, 256) and logits.shape == (3, 5)
    assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)
    assert enc.feat_dim == 32 * (21 if pooling == "mspp" else 1)


def test_lpa_weights_sum_to_one_and_mspp_shape():
    x = torch.rand(2, 4, 8, 8)
    lpa = LPA(4)
    w = lpa.weights(x)
    assert w.shape == (2, 1, 8, 8)
    assert torch.allclose(w.sum(dim=(1, 2, 3)), torch.ones(2))
    # pooled = sum_ij w_ij * x_ij
    assert torch.allclose(lpa(x), (x * w).sum(dim=(2, 3)))
    m = MSPP()(x)
    assert m.shape == (2, 4 * (1 + 4 + 16))
    assert torch.allclose(m[:, :4], x.mean(dim=(2, 3)))


def test_text_projection():
    p = TextProjection(384, 256)
    z = p(torch.rand(4, 384))
    assert z.shape == (4, 256) and torch.allclose(z.norm(dim=1), torch.ones(4), atol=1e-5)


def test_info_nce_toy_batch_by_hand():
    img = np.array([[1.0, 0.0], [0.0, 1.0]])
    txt = np.array([[1.0, 0.0], [0.0, 1.0]])
    # logits = I / T with T = 0.5: [[2, 0], [0, 2]]; each row CE = -log(e^2 / (e^2 + 1))
    expected = -math.log(math.e**2 / (math.e**2 + 1))
    assert info_nce_reference(img, txt, 0.5) == pytest.approx(expected)
    got = info_nce(torch.tensor(img, dtype=torch.float32), torch.tensor(txt, dtype=torch.float32),
                   torch.tensor(math.log(2.0)))
    assert float(got) == pytest.approx(expected, rel=1e-6)
    rng = np.random.default_rng(0)
    a, b = l2n(rng.standard_normal((5, 8))), l2n(rng.standard_normal((5, 8)))
    t = torch.tensor(math.log(1 / 0.07))
    assert float(info_nce(torch.tensor(a), torch.tensor(b), t)) == pytest.approx(info_nce_reference(a, b, 0.07), rel=1e-5)


def test_sentence_encoder_offline():
    from kgrag.retrieval.encoders import SentenceTextEncoder

    e = SentenceTextEncoder()
    v = e.encode_texts(["Small left pleural effusion.", "Left pleural effusion, small.", "Fractured femur."])
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]


def test_unknown_text_model_is_a_clear_error():
    from kgrag.errors import ModelNotFoundError
    from kgrag.retrieval.encoders import resolve_text_model

    with pytest.raises(ModelNotFoundError, match="local path"):
        resolve_text_model("some-org/some-model")

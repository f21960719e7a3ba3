"""A tiny end-to-end training run on phantom images (fake docstore, hash text encoder)."""

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from kgrag.errors import InputError, ModelMismatchError, ModelNotFoundError
from kgrag.model.encoders import HashEncoder
from kgrag.ontology import ids_with_role


@dataclass
class Study:
    id: str
    split: str
    report: str
    images: list = field(default_factory=list)
    modality: str = "radiology"


class FakeDocStore:
    """The part of kgrag.docstore.DocStore that training reads; records the splits asked for."""

    def __init__(self, studies, concepts):
        self._studies, self._concepts, self.asked = studies, concepts, []

    def studies(self, split=None, modality=None):
        self.asked.append(split)
        return iter([s for s in self._studies if split is None or s.split == split])

    def study_concepts(self, split=None):
        self.asked.append(split)
        return {s.id: self._concepts[s.id] for s in self._studies if split is None or s.split == split}

    def close(self):
        pass


def _phantom(path, nodule, cardiomegaly, rng):
    """64×64 phantom: noisy lungs, a heart ellipse (wide with cardiomegaly), an optional bright nodule."""
    from PIL import Image

    yy, xx = np.mgrid[0:64, 0:64]
    img = 0.2 + 0.05 * rng.standard_normal((64, 64))
    w = 16 if cardiomegaly else 9
    img[((xx - 32) / w) ** 2 + ((yy - 40) / 10) ** 2 < 1] = 0.7
    if nodule:
        cy, cx = rng.integers(12, 28), rng.integers(10, 54)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < 9] = 1.0
    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path)
    return str(path)


def _corpus(tmp_path, n=64, n_val=24, n_test=8):
    rng = np.random.default_rng(0)
    studies, concepts = [], {}
    for i in range(n + n_val + n_test):
        split = "train" if i < n else "val" if i < n + n_val else "test"
        nod, card = bool(i % 2), bool((i // 2) % 2)
        report = ("Nodule in the right upper lobe. " if nod else "No nodule. ") + (
            "The heart is enlarged." if card else "Heart size is normal.")
        sid = f"p{i}"
        studies.append(Study(sid, split, report, [_phantom(tmp_path / f"{sid}.png", nod, card, rng)]))
        concepts[sid] = {"nodule": "present" if nod else "absent",
                         "enlarged_cardiomediastinum": "present" if card else "absent"}
    return FakeDocStore(studies, concepts)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from kgrag.config import load_settings
    from kgrag.model.train import train

    tmp = tmp_path_factory.mktemp("train-small")
    ds = _corpus(tmp)
    settings = load_settings(tmp / "home")
    rep = train(settings, docstore=ds, epochs=1, batch_size=16, width=8, text_encoder=HashEncoder(64),
                progress=False)
    return settings, ds, rep


def test_train_writes_model_and_manifest(trained):
    settings, ds, rep = trained
    assert "test" not in ds.asked and None not in ds.asked  # leakage guard: only train and val were read
    assert rep.n_train == 64 and rep.n_val == 24 and rep.epochs_run == 1 and rep.best_epoch == 1
    h = rep.history[0]
    assert math.isfinite(h["loss"]) and 0 < h["temperature"] < 1 and set(h) >= {"R@1", "R@5", "R@10"}
    assert rep.chance_recall == {"R@1": 1 / 24, "R@5": 5 / 24, "R@10": 10 / 24}
    assert set(rep.findings_auc) == set(ids_with_role("ImageFinding"))
    assert rep.findings_auc["support_devices"] is None  # never mentioned → one class only
    assert 0.0 <= rep.findings_auc["nodule"] <= 1.0
    assert sum(rep.fusion.values()) == pytest.approx(1.0) and min(rep.fusion.values()) >= 0
    assert rep.reward_threshold is not None and 0 <= rep.reward_val_pair_accuracy <= 1
    m = json.loads((settings.models_dir / "default" / "manifest.json").read_text())
    for key in ("format", "text_encoder", "text_dim", "embed_dim", "pooling", "findings", "training", "seed", "metrics",
                "kgrag_version", "built_at", "saved_at", "fingerprint", "fusion", "reward"):
        assert key in m, key
    assert m["splits_used"] == ["train", "val"] and m["pooling"] == "lpa" and m["text_dim"] == 64
    assert m["fusion_fit"]["on"] == "val" and m["seed"] == settings.models.seed


def test_trained_model_loads_and_encodes(trained, tmp_path):
    from kgrag.model.retrieval_model import RetrievalModel

    settings, _, rep = trained
    model = RetrievalModel.load(rep.path, text_encoder=HashEncoder(64))
    model.warm_up()
    imgs = [np.random.default_rng(i).random((50, 70), dtype=np.float32) for i in range(3)]
    zi = model.encode_images(imgs)
    zt = model.encode_texts(["No nodule.", "Nodule in the right upper lobe.", "The heart is enlarged."])
    for z in (zi, zt):
        assert z.shape == (3, 256) and z.dtype == np.float32
        assert np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    probs = model.findings_probs(imgs)
    assert len(probs) == 3 and set(probs[0]) == set(ids_with_role("ImageFinding"))
    assert all(0.0 <= p <= 1.0 for p in probs[0].values())
    assert model.reward(zi[:1], zt).shape == (3,) and model.reward(zi, zt).shape == (3,)
    assert model.fusion.alpha + model.fusion.beta + model.fusion.gamma == pytest.approx(1.0)
    assert model.reward_threshold == pytest.approx(rep.reward_threshold)
    assert len(model.fingerprint) == 16 and model.encode_images([]).shape == (0, 256)

    # the model is an Encoder: an index built from it records its fingerprint
    from kgrag.index.indexset import IndexSet
    from kgrag.types import Study as S

    IndexSet.build(tmp_path / "idx", model, [S("a", "No nodule."), S("b", "Nodule.")], graph_version=None, progress=False)
    assert IndexSet.load(tmp_path / "idx", expect_encoder=model.fingerprint).ids("text") == ["a", "b"]


def test_model_load_errors(trained, tmp_path):
    import shutil

    from kgrag.model.retrieval_model import RetrievalModel

    _, _, rep = trained
    with pytest.raises(ModelNotFoundError, match="kgrag train"):
        RetrievalModel.load(tmp_path / "none")
    copy = tmp_path / "copy"
    shutil.copytree(rep.path, copy)
    with open(copy / "weights.pt", "ab") as f:
        f.write(b"x")
    with pytest.raises(ModelMismatchError, match="fingerprint"):
        RetrievalModel.load(copy)


def test_train_rejects_bad_arguments_and_empty_corpus(tmp_path):
    from kgrag.config import load_settings
    from kgrag.model.train import train

    settings = load_settings(tmp_path / "home")
    with pytest.raises(InputError, match="pooling"):
        train(settings, docstore=FakeDocStore([], {}), pooling="max", progress=False)
    with pytest.raises(InputError, match="train studies with images"):
        train(settings, docstore=FakeDocStore([], {}), text_encoder=HashEncoder(8), progress=False)

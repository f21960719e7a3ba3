"""Tiny end-to-end training runs (fake docstore, hash text encoder): on phantom images,
and on a text-only corpus (reports without images)."""

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from kgrag.errors import InputError, ModelMismatchError, ModelNotFoundError
from kgrag.model.data import head_concepts
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
                         "enlarged_cardiomediastinum": "present" if card else "absent",
                         "cardiomegaly": "present" if card else "absent"}  # a Finding, visible on the image
    return FakeDocStore(studies, concepts)


def _text_corpus(n=60, n_val=24, n_test=6):
    """Reports only: the same sentences as the phantom corpus, no images (one study names
    an image file that does not exist: a text-only model must never read it)."""
    studies, concepts = [], {}
    for i in range(n + n_val + n_test):
        split = "train" if i < n else "val" if i < n + n_val else "test"
        nod, card = bool(i % 2), bool((i // 2) % 2)
        report = ("Nodule in the right upper lobe. " if nod else "No nodule. ") + (
            "The heart is enlarged." if card else "Heart size is normal.")
        studies.append(Study(f"t{i}", split, report, []))
        concepts[f"t{i}"] = {"nodule": "present" if nod else "absent", "cardiomegaly": "present" if card else "absent"}
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
    # the head covers every concept an image can show: image findings and findings, no diagnosis
    assert set(rep.findings_auc) == set(head_concepts())
    assert set(ids_with_role("ImageFinding")) < set(head_concepts()) and {"cardiomegaly", "pleural_effusion",
                                                                         "consolidation", "edema", "pneumothorax"} <= set(head_concepts())
    assert not set(ids_with_role("Diagnosis")) & set(head_concepts())
    assert rep.findings_auc["support_devices"] is None  # never mentioned → one class only
    assert "val cannot check" in rep.excluded["support_devices"]
    for c in ("nodule", "cardiomegaly"):
        assert 0.0 <= rep.findings_auc[c] <= 1.0 and rep.findings[c]["ece_raw"] is not None
    # V_I is exactly the concepts val shows the head can see (AUC ≥ the 0.6 setting)
    assert set(rep.visible) == {c for c, a in rep.findings_auc.items() if a is not None and a >= 0.6}
    assert set(rep.excluded) == set(head_concepts()) - set(rep.visible)
    assert all(rep.findings[c]["in_vi"] == (c in rep.visible) for c in head_concepts())
    f = {k: v for k, v in rep.fusion.items() if k != "forms"}
    assert sum(f.values()) == pytest.approx(1.0) and min(f.values()) >= 0
    assert set(rep.fusion["forms"]) == {"image", "image+question", "image+findings"}
    assert set(rep.fusion_forms) >= {"image", "image+question", "image+findings", "findings", "question", "own_report_fit"}
    assert all(0 <= rep.fusion_forms[f]["recall@10"] <= 1 for f in ("image", "image+question", "findings"))
    assert set(rep.reward_thresholds) == {"image", "text", "question"}
    assert rep.reward_threshold == rep.reward_thresholds["image"] and 0 <= rep.reward_val_pair_accuracy <= 1
    # each kind's threshold is fitted on val stage-1 candidates, or left off with the reason
    for kind, f in rep.reward_fit.items():
        assert f["candidates"] == 50 and (("threshold" in f) == (rep.reward_thresholds[kind] is not None))
        assert "threshold" in f or "off" in f
    m = json.loads((settings.models_dir / "default" / "manifest.json").read_text())
    for key in ("format", "text_encoder", "text_dim", "embed_dim", "pooling", "findings", "training", "seed", "metrics",
                "kgrag_version", "built_at", "saved_at", "fingerprint", "fusion", "reward", "calibration", "visible",
                "excluded", "modalities", "findings_head"):
        assert key in m, key
    assert m["splits_used"] == ["train", "val"] and m["pooling"] == "lpa" and m["text_dim"] == 64
    assert m["fusion_fit"]["on"] == "val" and m["seed"] == settings.models.seed
    assert m["modalities"] == ["image", "text"] and m["findings"] == head_concepts() and m["visible"] == rep.visible
    assert m["excluded"] == rep.excluded and m["findings_head"]["unmentioned"] == "absent"
    assert set(m["calibration"]) == set(head_concepts()) and {"a", "b", "auc", "ece_raw"} <= set(m["calibration"]["nodule"])
    assert m["reward"]["thresholds"] == rep.reward_thresholds


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
    assert len(probs) == 3 and set(probs[0]) == set(rep.visible)  # V_I: the concepts the head can see
    assert set(model.findings_probs(imgs, all_concepts=True)[0]) == set(head_concepts())
    assert all(0.0 <= p <= 1.0 for p in probs[0].values())
    # the saved calibration is what V_I reports: σ(a·z + b) of the head's logit
    z = model.head_logits(imgs[:1])[0]
    for c in rep.visible:
        j = model.findings.index(c)
        a, b = rep.findings[c]["a"], rep.findings[c]["b"]
        assert probs[0][c] == pytest.approx(1 / (1 + math.exp(-(a * z[j] + b))), abs=1e-5)
    for kind in ("image", "text", "question"):
        got, want = model.reward_threshold_for(kind), rep.reward_thresholds[kind]
        assert got == want if want is None else got == pytest.approx(want)
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
    with pytest.raises(InputError, match="train studies"):
        train(settings, docstore=FakeDocStore([], {}), text_encoder=HashEncoder(8), progress=False)


@pytest.fixture(scope="module")
def trained_text(tmp_path_factory):
    from kgrag.config import load_settings
    from kgrag.model.train import train

    tmp = tmp_path_factory.mktemp("train-text")
    ds = _text_corpus()
    settings = load_settings(tmp / "home")
    rep = train(settings, docstore=ds, epochs=3, batch_size=16, text_encoder=HashEncoder(64), progress=False)
    return settings, ds, rep


def test_text_only_corpus_trains_the_text_side(trained_text):
    settings, ds, rep = trained_text
    assert "test" not in ds.asked
    assert rep.modalities == ["text"] and rep.n_train == 60 and rep.n_val == 24
    assert rep.findings == {} and rep.visible == [] and rep.excluded == {}
    assert 1 <= rep.epochs_run <= 3 and "findings_recall@10" in rep.history[0]
    assert 0 <= rep.val_recall["findings_R@10"] <= 1 and rep.text_baseline_recall is not None
    assert {k: v for k, v in rep.fusion.items() if k != "forms"} == {"alpha": 0.0, "beta": 0.0, "gamma": 1.0}
    assert set(rep.fusion_forms) == {"findings", "question", "findings+question"}
    assert rep.fusion_forms["findings"]["weights_effective"] == [0.0, 0.0, 1.0]
    assert set(rep.reward_thresholds) == {"text", "question"} and rep.reward_threshold == rep.reward_thresholds["text"]
    m = json.loads((settings.models_dir / "default" / "manifest.json").read_text())
    assert m["modalities"] == ["text"] and m["findings"] == [] and m["pooling"] is None


def test_text_only_model_loads_encodes_texts_refuses_images_and_indexes_text(trained_text, tmp_path):
    from kgrag.index.indexset import IndexSet
    from kgrag.model.retrieval_model import RetrievalModel
    from kgrag.types import Study as S

    _, _, rep = trained_text
    model = RetrievalModel.load(rep.path, text_encoder=HashEncoder(64))
    model.warm_up()
    assert model.modalities == ["text"] and model.findings == [] and model.image_encoder is None
    z = model.encode_texts(["No nodule.", "The heart is enlarged."])
    assert z.shape == (2, 256) and np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    img = np.zeros((16, 16), np.float32)
    with pytest.raises(InputError, match="text-only"):
        model.encode_images([img])
    assert model.findings_probs([img]) == [{}]
    assert model.reward_threshold == pytest.approx(rep.reward_threshold)
    # an index of a text-only model: the text space, an empty image space, fused = text;
    # an image path a study carries is never opened
    studies = [S("a", "No nodule."), S("b", "Nodule.", images=[str(tmp_path / "missing.png")]), S("c", "x", split="test")]
    idx = IndexSet.build(tmp_path / "idx", model, studies, graph_version=None, progress=False)
    info = idx.info()
    assert info["model_modalities"] == ["text"]
    assert {k: v["count"] for k, v in info["spaces"].items()} == {"text": 2, "image": 0, "fused": 2}
    assert np.allclose(idx.vectors("fused", ["a", "b"]), idx.vectors("text", ["a", "b"]))
    back = IndexSet.load(tmp_path / "idx", expect_encoder=model.fingerprint)
    ids, _ = back.search("text", model.encode_texts(["Nodule in the right upper lobe."]), 1)
    assert ids[0][0] in {"a", "b"}

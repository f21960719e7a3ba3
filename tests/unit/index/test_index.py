"""FAISS index set: save/load round trip, mismatch refusal, incremental add, HNSW path."""

import json

import numpy as np
import pytest

from kgrag.errors import IndexMismatchError, InputError
from kgrag.index.indexset import IndexSet
from kgrag.model.encoders import HashEncoder, l2n
from kgrag.types import Study as S


def _png(path, seed):
    from PIL import Image

    Image.fromarray((np.random.default_rng(seed).random((32, 32)) * 255).astype(np.uint8)).save(path)
    return str(path)


def _studies(tmp_path, n, start=0):
    """Every third study has no image; every tenth is a test study; s{i} with i % 4 == 3 is pathology."""
    out = []
    for i in range(start, start + n):
        imgs = [_png(tmp_path / f"i{i}.png", i)] if i % 3 else []
        out.append(S(f"s{i}", f"report {i} {'effusion' if i % 2 else 'clear'}", split="test" if i % 10 == 9 else "train",
                     modality="pathology" if i % 4 == 3 else "radiology", images=imgs))
    return out


def test_build_save_load_round_trip(tmp_path):
    enc = HashEncoder(32)
    studies = _studies(tmp_path, 30)
    idx = IndexSet.build(tmp_path / "idx", enc, studies, graph_version="g-1", progress=False)
    kept = [s for s in studies if s.split != "test"]
    assert "s9" not in idx.ids("text") and len(idx.ids("text")) == len(kept) == 27
    assert idx.ids("image") == [s.id for s in kept if s.images]  # studies without images are absent
    loaded = IndexSet.load(tmp_path / "idx", expect_encoder=enc.name, expect_graph_version="g-1")
    assert loaded.ids("text") == idx.ids("text") and loaded.version == idx.version and loaded.version.startswith("i-")
    q = enc.encode_texts(["report 4 clear"])
    ids, scores = loaded.search("text", q, 3)
    assert ids[0][0] == "s4" and scores.shape == (1, 3) and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert all(isinstance(i, str) for i in ids[0])  # ids from the sidecar, never FAISS rows
    # stored vectors: text = encoder output; image = encoder output; fused = l2n((t + i) / 2)
    s4 = next(s for s in studies if s.id == "s4")
    from kgrag.imaging import IMAGE_SIZE, load_image

    t = enc.encode_texts([s4.report])[0]
    im = enc.encode_images([load_image(s4.images[0], size=IMAGE_SIZE)])[0]
    assert np.allclose(loaded.vectors("text", ["s4"])[0], t, atol=1e-6)
    assert np.allclose(loaded.vectors("image", ["s4"])[0], im, atol=1e-5)
    assert np.allclose(loaded.vectors("fused", ["s4"])[0], l2n((t + im) / 2), atol=1e-5)
    assert np.allclose(loaded.vectors("fused", ["s3"])[0], enc.encode_texts([studies[3].report])[0], atol=1e-6)  # no image
    assert not loaded.has("image", "s3") and not loaded.vectors("image", ["s3"]).any()  # absent → zero row
    assert loaded.modalities["s3"] == "pathology" and loaded.modalities["s4"] == "radiology"
    info = loaded.info()
    assert info["spaces"]["text"] == {"kind": "flat", "count": 27, "dim": 32, "metric": "inner_product(cosine)", "params": {}}
    assert info["modalities"] == {"radiology": 21, "pathology": 6}  # s3..s27 step 4, minus test s19 and info["graph_version"] == "g-1"
    for f in ("manifest.json", "text/ids.json", "text/manifest.json", "text/index.faiss", "text/vectors.npy",
              "image/index.faiss", "fused/vectors.npy"):
        assert (tmp_path / "idx" / f).is_file()
    m = json.loads((tmp_path / "idx" / "image" / "manifest.json").read_text())
    for key in ("encoder", "encoder_fingerprint", "dim", "metric", "count", "built_at", "kgrag_version", "graph_version", "params"):
        assert key in m
    assert m["count"] == len(idx.ids("image")) and json.loads((tmp_path / "idx" / "image" / "ids.json").read_text()) == idx.ids("image")


def test_mean_of_a_studys_images(tmp_path):
    enc = HashEncoder(16)
    a, b = _png(tmp_path / "a.png", 1), _png(tmp_path / "b.png", 2)
    idx = IndexSet.build(tmp_path / "idx", enc, [S("x", "two views", images=[a, b])], graph_version=None, progress=False)
    from kgrag.imaging import IMAGE_SIZE, load_image

    v = enc.encode_images([load_image(a, size=IMAGE_SIZE), load_image(b, size=IMAGE_SIZE)])
    assert np.allclose(idx.vectors("image", ["x"])[0], l2n(v.mean(axis=0)), atol=1e-5)


def test_mismatch_refuses_to_load_and_names_the_fix(tmp_path):
    IndexSet.build(tmp_path / "idx", HashEncoder(32), _studies(tmp_path, 10), graph_version="g-1", progress=False)
    with pytest.raises(IndexMismatchError, match="hash-32-0") as ei:
        IndexSet.load(tmp_path / "idx", expect_encoder="other-encoder")
    assert "other-encoder" in str(ei.value) and "kgrag index build" in str(ei.value)
    with pytest.raises(IndexMismatchError, match="g-1") as ei:
        IndexSet.load(tmp_path / "idx", expect_graph_version="g-2")
    assert "g-2" in str(ei.value) and "kgrag index build" in str(ei.value)
    with pytest.raises(IndexMismatchError):
        IndexSet.load(tmp_path / "idx", model=HashEncoder(32, seed=5))
    with pytest.raises(InputError, match="no indexes"):
        IndexSet.load(tmp_path / "nothing")
    (tmp_path / "idx" / "text" / "ids.json").write_text(json.dumps(["only-one"]))
    with pytest.raises(IndexMismatchError, match="inconsistent"):
        IndexSet.load(tmp_path / "idx")


def test_search_checks_dimension_and_space(tmp_path):
    idx = IndexSet.build(tmp_path / "idx", HashEncoder(32), _studies(tmp_path, 6), graph_version=None, progress=False)
    with pytest.raises(InputError, match="dim 16"):
        idx.search("text", np.ones((1, 16), np.float32), 3)
    with pytest.raises(InputError, match="no 'audio' index"):
        idx.search("audio", np.ones((1, 32), np.float32), 3)
    ids, scores = idx.search("text", HashEncoder(32).encode_texts(["x"]), 100)  # k capped at the count
    assert len(ids[0]) == 6 and scores.shape == (1, 6)


def test_test_split_is_never_indexed(tmp_path):
    with pytest.raises(InputError, match="no studies"):
        IndexSet.build(tmp_path / "idx", HashEncoder(8), [S("t", "r", split="test")], graph_version=None, progress=False)
    v = l2n(np.ones((1, 8)))
    with pytest.raises(InputError, match="test-split"):
        IndexSet.from_vectors(tmp_path / "idx", HashEncoder(8), {"text": (["t"], v)}, {"t": "radiology"}, {"t": "test"})


def test_incremental_add_skips_known_ids_and_test(tmp_path):
    enc = HashEncoder(32)
    idx = IndexSet.build(tmp_path / "idx", enc, _studies(tmp_path, 12), graph_version="g", progress=False)
    v0 = idx.version
    n = idx.add(_studies(tmp_path, 12) + _studies(tmp_path, 6, start=104))
    assert n == 5  # 6 new (s104..s109), s109 is test
    again = IndexSet.load(tmp_path / "idx", model=enc)
    assert len(again.ids("text")) == 11 + 5 and again.version != v0 and again.graph_version == "g"
    assert "s105" in again.ids("text") and "s109" not in again.ids("text")
    assert json.loads((tmp_path / "idx" / "text" / "manifest.json").read_text())["count"] == 16
    assert again.modalities["s107"] == "pathology" and again.meta["updated_at"]
    ids, scores = again.search("text", again.vectors("text", ["s105"]), 1)
    assert ids[0][0] == "s105" and scores[0][0] == pytest.approx(1.0, abs=1e-5)
    assert again.add(_studies(tmp_path, 6, start=104)) == 0  # nothing new
    with pytest.raises(IndexMismatchError):
        again.add([S("new", "r")], model=HashEncoder(32, seed=9))
    with pytest.raises(InputError, match="needs the encoder"):
        IndexSet.load(tmp_path / "idx").add([S("new", "r")])


def test_hnsw_path_and_growth_past_flat_max(tmp_path):
    enc = HashEncoder(32)
    idx = IndexSet.build(tmp_path / "idx", enc, _studies(tmp_path, 12), graph_version=None, flat_max=5, progress=False)
    info = idx.info()["spaces"]
    assert info["text"]["kind"] == "hnsw" and info["text"]["params"] == {"M": 32, "efConstruction": 80, "efSearch": 128}
    assert info["image"]["kind"] == "hnsw"  # 7 image rows > 5
    loaded = IndexSet.load(tmp_path / "idx")
    assert loaded.spaces["text"].index.hnsw.efSearch == 128
    ids, _ = loaded.search("text", loaded.vectors("text", ["s4"]), 1)
    assert ids[0] == ["s4"]
    # a flat space becomes HNSW when an add takes it past flat_max
    small = IndexSet.build(tmp_path / "idx2", enc, _studies(tmp_path, 4), graph_version=None, flat_max=5, progress=False)
    assert small.info()["spaces"]["text"]["kind"] == "flat"
    small.add(_studies(tmp_path, 4, start=20))
    again = IndexSet.load(tmp_path / "idx2")
    assert again.info()["spaces"]["text"]["kind"] == "hnsw" and len(again.ids("text")) == 8
    assert again.search("text", again.vectors("text", ["s21"]), 1)[0][0] == ["s21"]

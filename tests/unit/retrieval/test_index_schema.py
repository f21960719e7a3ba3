from dataclasses import dataclass, field

import numpy as np
import pytest

from kgrag.errors import IndexMismatchError, InputError
from kgrag.retrieval.encoders import HashEncoder
from kgrag.retrieval.index import IndexSet
from kgrag.retrieval.schema import validate_query_output


@dataclass
class S:
    id: str
    report: str
    split: str = "train"
    modality: str = "radiology"
    images: list = field(default_factory=list)


def _studies(tmp_path, n, with_images=True, start=0):
    from PIL import Image

    out = []
    rng = np.random.default_rng(start)
    for i in range(start, start + n):
        imgs = []
        if with_images and i % 3:
            p = tmp_path / f"i{i}.png"
            Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8)).save(p)
            imgs = [str(p)]
        out.append(S(f"s{i}", f"report {i} {'effusion' if i % 2 else 'clear'}", "test" if i % 10 == 9 else "train", images=imgs))
    return out


def test_build_save_load_search(tmp_path):
    enc = HashEncoder(32)
    idx = IndexSet.build(tmp_path / "idx", enc, _studies(tmp_path, 30), graph_version="g-1", progress=False)
    assert "s9" not in idx.ids("text")  # test split never indexed
    assert len(idx.ids("text")) == 27 and len(idx.ids("image")) < 27
    loaded = IndexSet.load(tmp_path / "idx", expect_encoder=enc.name, expect_graph_version="g-1")
    q = enc.encode_texts(["report 4 clear"])
    ids, scores = loaded.search("text", q, 3)
    assert ids[0][0] == "s4" and scores.shape == (1, 3)
    assert np.allclose(loaded.vectors("text", ["s4"])[0], enc.encode_texts(["report 4 clear"])[0], atol=1e-6)
    assert loaded.info()["spaces"]["text"]["kind"] == "flat"
    for f in ("manifest.json", "text/ids.json", "text/manifest.json", "text/index.faiss", "text/vectors.npy"):
        assert (tmp_path / "idx" / f).is_file()


def test_mismatch_refuses_to_load(tmp_path):
    IndexSet.build(tmp_path / "idx", HashEncoder(32), _studies(tmp_path, 10), graph_version="g-1", progress=False)
    with pytest.raises(IndexMismatchError, match="encoder"):
        IndexSet.load(tmp_path / "idx", expect_encoder="other-encoder")
    with pytest.raises(IndexMismatchError, match="graph"):
        IndexSet.load(tmp_path / "idx", expect_graph_version="g-2")
    with pytest.raises(InputError):
        IndexSet.load(tmp_path / "nothing")


def test_incremental_add_and_hnsw(tmp_path):
    enc = HashEncoder(32)
    idx = IndexSet.build(tmp_path / "idx", enc, _studies(tmp_path, 12), graph_version=None, flat_max=5, progress=False)
    assert idx.info()["spaces"]["text"]["kind"] == "hnsw"
    n = idx.add(enc, _studies(tmp_path, 12) + _studies(tmp_path, 6, start=104))
    assert n == 5  # 6 new, one of them test split
    again = IndexSet.load(tmp_path / "idx")
    assert len(again.ids("text")) == 11 + 5
    assert "s105" in again.ids("text") and "s109" not in again.ids("text")
    v = again.vectors("text", ["s105"])
    ids, scores = again.search("text", v, 1)
    assert scores[0][0] == pytest.approx(1.0, abs=1e-5)


def _valid():
    return {"query": {}, "answer": None, "image_findings": [{"concept": "lung_opacity", "probability": 0.9}],
            "diagnoses": [{"concept": "pneumonia", "probability": 0.8, "paths": [{"nodes": ["a", "b"], "strength": 0.5}],
                           "counterfactual": [{"remove": "a", "probability": 0.1}]}],
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

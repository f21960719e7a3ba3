"""A text-only corpus end to end: manifest without images → ingest → graph → train (text
side only) → index (text space) → ``--findings`` and ``--question`` queries (embedded FalkorDB)."""

import json
import os
import subprocess
import sys

import pytest

from kgrag.config import load_settings


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from kgrag.index.indexset import build_from_settings
    from kgrag.ingest.pipeline import ingest
    from kgrag.kg.build import build_graph
    from kgrag.model.train import train
    from kgrag.synth.generate import make_study

    tmp = tmp_path_factory.mktemp("text-only")
    rows = []
    for i in range(260):
        row, _ = make_study(5, i, False, with_image=False)
        row.pop("images")  # reports only, the way an IU-Xray manifest looks
        rows.append(row)
    (tmp / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = load_settings(tmp / "home")
    ingest(s, tmp / "manifest.jsonl", progress=False)
    build_graph(s, progress=False)
    rep = train(s, epochs=3, batch_size=32, progress=False)
    idx = build_from_settings(s, progress=False)
    yield s, rows, rep, idx
    from kgrag.graph.falkordb_server import EmbeddedFalkorDB

    EmbeddedFalkorDB(s.graph_dir).stop()


def test_train_and_index_cover_the_text_side(home):
    _, rows, rep, idx = home
    n_trainval = sum(r["split"] in ("train", "val") for r in rows)
    assert rep.modalities == ["text"] and rep.n_train > 100 and rep.visible == []
    assert set(rep.reward_thresholds) == {"text", "question"} and 0 <= rep.val_recall["findings_R@10"] <= 1
    assert set(rep.fusion_forms) == {"findings", "question", "findings+question"}
    assert idx["counts"] == {"text": n_trainval, "image": 0, "fused": n_trainval}
    assert idx["model_modalities"] == ["text"]


def test_findings_query_observes_the_text_and_retrieves_reports(home):
    from kgrag.query.pipeline import Query, QueryPipeline

    s, rows, _, _ = home
    test_ids = {r["id"] for r in rows if r["split"] == "test"}
    pipe = QueryPipeline.from_settings(s)
    try:
        res = pipe.run(Query(findings="Focal consolidation in the right lower lobe. No pleural effusion.", k=5))
        q = pipe.run(Query(question="Is there pleural effusion?", k=5))
    finally:
        pipe.close()
    assert len(res["evidence"]) >= 1 and not {e["id"] for e in res["evidence"]} & test_ids
    assert all(e["similarity"]["image_text"] is None and e["similarity"]["text_text"] is not None
               for e in res["evidence"])
    assert res["image_findings"] == []  # no image: V_I comes from the findings text
    assert q["answer"]["yes_no"] in ("yes", "no", None) and q["evidence"]


def test_an_image_query_on_a_text_only_model_says_what_to_do(home, tmp_path):
    import numpy as np
    from PIL import Image

    from kgrag.errors import InputError
    from kgrag.query.pipeline import Query, QueryPipeline

    s, _, _, _ = home
    p = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(p)
    pipe = QueryPipeline.from_settings(s)
    try:
        with pytest.raises(InputError, match="text-only") as ei:
            pipe.run(Query(images=[str(p)]))
        assert "--findings" in (ei.value.fix or "")
    finally:
        pipe.close()


def test_cli_findings_query_json(home):
    s, _, _, _ = home
    env = {**os.environ, "KGRAG_HOME": str(s.home)}
    r = subprocess.run([sys.executable, "-m", "kgrag", "query", "--findings", "The heart is enlarged.",
                        "--question", "Is the heart enlarged?", "--k", "3", "--json"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["evidence"] and out["answer"]["yes_no"] in ("yes", "no", None)

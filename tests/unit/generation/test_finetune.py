"""LoRA fine-tuning end to end on a tiny random Llama-style model: the loss falls, the
adapter and its manifest load back, test studies never enter."""

import json

import pytest
from _gen_bundles import bundle, closed

pytest.importorskip("peft")
torch = pytest.importorskip("torch")

from kgrag.errors import InputError, TestLeakError  # noqa: E402
from kgrag.generation.finetune import (  # noqa: E402
    Example,
    LoraSettings,
    data_hash,
    finetune,
    read_manifest,
    report_target,
)


def _examples():
    b = bundle()
    q = bundle(closed("pleural_effusion", text="Is there pleural effusion?"))
    return [Example("t1", "train", "report", b.without(["s3"]), report_target("Small right pleural effusion.", "No acute process.")),
            Example("t2", "train", "closed_vqa", q, "Yes."),
            Example("t3", "train", "report", b, report_target("No pneumothorax.", None))]


def test_report_target_and_hash():
    assert report_target("A.", "B.") == "FINDINGS: A. IMPRESSION: B."
    assert report_target(None, None, "whole report") == "whole report"
    ex = _examples()
    assert data_hash(ex, "v1") == data_hash(list(ex), "v1") != data_hash(ex[:2], "v1")


def test_lora_steps_reduce_the_loss_and_the_adapter_loads_back(tmp_path):
    from _gen_tiny import save_tiny_llama

    from kgrag.generation.hf import TransformersGenerator

    base = save_tiny_llama(tmp_path / "base", layers=2)
    out = tmp_path / "home" / "models" / "lora"
    rep = finetune(base, _examples(), out, steps=12, lr=5e-3, lora=LoraSettings(r=4, alpha=8, dropout=0.0,
                   target_modules=["q_proj", "v_proj"]), checkpoint_every=5, graph_version="g-test", index_version="i-test")
    assert rep.steps == 12 and len(rep.losses) == 12 and rep.n_examples == 3 and rep.n_studies == 3
    assert rep.loss_after < rep.loss_before  # the target loss over the examples falls
    assert sum(rep.losses[-3:]) < sum(rep.losses[:3])
    m = read_manifest(out)
    assert m["base_model_path"] == str(base.resolve()) and m["lora"] == {"r": 4, "alpha": 8, "dropout": 0.0,
                                                                          "target_modules": ["q_proj", "v_proj"]}
    assert m["data_hash"] == rep.data_hash and m["graph_version"] == "g-test" and m["splits"] == ["train"]
    assert m["optimizer"]["name"] == "AdamW" and m["tasks"] == ["closed_vqa", "report"]
    assert (out / "adapter_config.json").is_file() and (out / "checkpoints" / "step-5" / "adapter_config.json").is_file()
    # the adapter loads back through the generator, and it is not the base model
    g = TransformersGenerator(out, max_new_tokens=3)
    g.warm_up()
    assert g.adapter_path == out and g.base_path == base.resolve()
    enc = g.encode(_examples()[1].bundle, "closed_vqa")
    with torch.no_grad():
        tuned = g.model_obj(**enc["inputs"]).logits
    plain = TransformersGenerator(base, max_new_tokens=3)
    plain.warm_up()
    with torch.no_grad():
        base_logits = plain.model_obj(**enc["inputs"]).logits
    assert not torch.allclose(tuned, base_logits)
    # the loaded adapter is the trained one: its loss over the examples is the reported loss_after
    from kgrag.generation.finetune import _Data, _loss

    data = _Data(g, _examples())
    with torch.no_grad():
        loaded = sum(_loss(g.model_obj, x, "cpu").item() for x in data.items) / len(data.items)
    assert loaded == pytest.approx(rep.loss_after, abs=1e-5)
    ans = g.generate(_examples()[1].bundle)
    assert ans.generator["base_model"] == str(base.resolve()) and ans.yes_no in ("yes", "no")
    # retraining the same data on the same seed gives the same adapter losses
    rep2 = finetune(base, _examples(), tmp_path / "again", steps=12, lr=5e-3,
                    lora=LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"]))
    assert rep2.losses == rep.losses
    assert json.loads((tmp_path / "again" / "manifest.json").read_text())["data_hash"] == rep.data_hash


def test_test_studies_and_self_evidence_are_refused(tmp_path):
    ex = _examples()
    with pytest.raises(TestLeakError, match="t9"):
        finetune(tmp_path, [*ex, Example("t9", "test", "report", bundle(), "x")], tmp_path / "o", steps=1)
    with pytest.raises(InputError, match="own evidence"):
        finetune(tmp_path, [Example("s1", "train", "report", bundle(), "x")], tmp_path / "o", steps=1)
    with pytest.raises(InputError, match="no training examples"):
        finetune(tmp_path, [], tmp_path / "o", steps=1)

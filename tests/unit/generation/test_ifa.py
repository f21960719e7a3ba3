"""IFA (MR-RAG): the bias by hand, lambda = 0 identity, and attention mass moving toward the
most relevant document on tiny random models (Llama-style LM, LLaVA-style VLM)."""

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from _gen_bundles import bundle, closed  # noqa: E402
from _gen_tiny import llama_config, save_tiny_llama, save_tiny_llava  # noqa: E402

from kgrag.errors import InputError  # noqa: E402
from kgrag.generation import ifa  # noqa: E402


def _plan(lam, relevance=(1.0, 0.5, 0.0), record=False, layers=None):
    return ifa.IFAPlan(lam, [(2, 10), (12, 20), (22, 30)], list(relevance), 32, layers, record)


def test_bias_matrix_by_hand():
    plan = ifa.IFAPlan(2.0, [(1, 3), (4, 6)], [1.0, 0.5], 7)
    b = ifa.bias_matrix(plan, 9, 9)  # prefill: rows are positions 0..8
    assert b[:7].abs().sum() == 0  # rows before the question are untouched
    for row in (7, 8):
        assert b[row].tolist() == [0, 2, 2, 0, 1, 1, 0, 0, 0]
    step = ifa.bias_matrix(plan, 1, 12)  # a decoding step: the one row is position 11
    assert step[0].tolist()[:7] == [0, 2, 2, 0, 1, 1, 0]


def test_biased_attention_formula_by_hand():
    """One head, 3 tokens: the last row (the question) gets logit + lambda * r * |logit| on document 0's column."""
    q = torch.tensor([[[[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]]])
    k = torch.tensor([[[[2.0, 0.0], [0.0, -1.0], [1.0, 1.0]]]])
    v = torch.tensor([[[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]]])

    class M(torch.nn.Module):
        num_key_value_groups = 1
        layer_idx = 0

    plan = ifa.IFAPlan(0.5, [(1, 2)], [1.0], 2)  # document = key 1, question = query row 2
    out, probs = ifa.biased_attention(M().eval(), q, k, v, None, plan=plan, scaling=1.0)
    # row 2: logits q2.k = [2, 1, 0]; column 1 -> 1 + 0.5 * 1 * |1| = 1.5 ; causal: all three visible
    z = [math.exp(2), math.exp(1.5), math.exp(0)]
    expect = [x / sum(z) for x in z]
    assert probs[0, 0, 2].tolist() == pytest.approx(expect, abs=1e-6)
    # row 0 sees only key 0; row 1 (not a question row) is unbiased: logits [0, -1], key 2 masked
    assert probs[0, 0, 0].tolist() == pytest.approx([1.0, 0.0, 0.0])
    e = [math.exp(0), math.exp(-1)]
    assert probs[0, 0, 1].tolist() == pytest.approx([e[0] / sum(e), e[1] / sum(e), 0.0], abs=1e-6)
    assert out[0, 2, 0].tolist() == pytest.approx([expect[0] + expect[2], expect[1] + expect[2]], abs=1e-6)


@pytest.fixture(scope="module")
def models():
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    out = {}
    for impl in ("sdpa", "eager"):
        torch.manual_seed(0)
        m = LlamaForCausalLM(llama_config(300, 3, initializer_range=0.3)).eval()
        m.set_attn_implementation(impl)
        out[impl] = m
    return out


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_lambda_zero_is_bit_identical(models, impl):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    ref = LlamaForCausalLM(llama_config(300, 3, initializer_range=0.3)).eval()
    ref.set_attn_implementation(impl)
    m = models[impl]
    ids = torch.randint(4, 300, (1, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        base = ref(ids).logits
    assert ifa.install(m) == 3 and m.config._attn_implementation == "kgrag_ifa_" + impl
    with torch.no_grad(), ifa.apply(_plan(0.0)):
        same = m(ids).logits
    assert torch.equal(base, same)
    with torch.no_grad(), ifa.apply(_plan(2.0, layers=frozenset())):  # no layer chosen: untouched
        assert torch.equal(base, m(ids).logits)
    with ifa.apply(_plan(0.0)):
        g1 = m.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=3)
    g0 = ref.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=3)
    assert torch.equal(g0, g1)
    with torch.no_grad(), ifa.apply(_plan(2.0)):
        assert not torch.equal(base, m(ids).logits)  # and a positive lambda does change the output


def test_zero_bias_math_equals_eager(models):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    ref = LlamaForCausalLM(llama_config(300, 3, initializer_range=0.3)).eval()
    ref.set_attn_implementation("eager")
    m = models["eager"]
    ifa.install(m)
    ids = torch.randint(4, 300, (1, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), ifa.apply(_plan(1.0, relevance=(0.0, 0.0, 0.0))):  # the biased path, bias 0
        a = m(ids).logits
    with torch.no_grad():
        b = ref(ids).logits
    assert torch.allclose(a, b, atol=1e-6)


def _masses(model, inputs, plan_kw, lam):
    base = ifa.IFAPlan(lam, relevance=[0.0] * len(plan_kw["relevance"]), record=True,
                       **{k: v for k, v in plan_kw.items() if k != "relevance"})
    biased = ifa.IFAPlan(lam, record=True, **plan_kw)
    with torch.no_grad():
        with ifa.apply(base):
            model(**inputs)
        with ifa.apply(biased):
            model(**inputs)
    return base.masses[0][0], biased.masses[0][0]  # layer 0: its inputs are the same in both runs


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_attention_mass_moves_toward_the_most_relevant_document(models, impl):
    m = models[impl]
    ifa.install(m)
    ids = torch.randint(4, 300, (1, 40), generator=torch.Generator().manual_seed(3))
    kw = {"doc_spans": [(2, 10), (12, 20), (22, 30)], "relevance": [1.0, 0.5, 0.0], "query_start": 32}
    before, after = _masses(m, {"input_ids": ids}, kw, 1.0)
    assert after[0] > before[0]  # r = 1: more attention from the question
    assert after[2] < before[2]  # r = 0: less
    assert sum(after) > sum(before)  # documents gain on the unbiased tokens


def _vqa_bundle(tmp_path):
    from dataclasses import replace

    import numpy as np
    from PIL import Image

    img = tmp_path / "q.png"
    Image.fromarray((np.random.default_rng(0).random((48, 48)) * 255).astype("uint8")).save(img)
    b = bundle(closed("pleural_effusion", text="Is there pleural effusion?"))
    return replace(b, query=replace(b.query, images=(str(img),), question="Is there pleural effusion?"))


@pytest.mark.parametrize("kind", ["llama", "llava"])
def test_generator_ifa_moves_mass_on_tiny_models(tmp_path, kind):
    from kgrag.generation.hf import TransformersGenerator

    path = (save_tiny_llama if kind == "llama" else save_tiny_llava)(tmp_path / kind, init=0.3)
    b = _vqa_bundle(tmp_path)
    g = TransformersGenerator(path, max_new_tokens=4, ifa_lambda=1.0)
    enc = g.encode(b, "closed_vqa")
    assert g.is_vlm == (kind == "llava")
    ids = enc["inputs"]["input_ids"][0]
    (a, z) = enc["spans"]["docs"][0]
    assert g.tokenizer.decode(ids[a:z]).startswith("[s1] rank 1, relevance 1.00")  # the spans land on the documents
    qa, qz = enc["spans"]["question"]
    assert g.tokenizer.decode(ids[qa:qz]).strip() == "Is there pleural effusion?"
    kw = {"doc_spans": enc["spans"]["docs"], "relevance": enc["prompt"].relevance, "query_start": enc["spans"]["query_start"]}
    assert kw["relevance"] == pytest.approx([1.0, 0.5, 0.0])
    before, after = _masses(g.model_obj, dict(enc["inputs"]), kw, 1.0)
    assert after[0] > before[0] and after[2] < before[2]
    ans = g.generate(b)
    assert ans.generator["ifa"] == {"lambda": 1.0, "layers": None} and ans.yes_no in ("yes", "no")


def test_layers_are_normalised_and_checked():
    assert ifa.normalise_layers([-1, 0], 4) == frozenset({3, 0})
    assert ifa.normalise_layers(None, 4) is None
    with pytest.raises(InputError, match="IFA layer 7"):
        ifa.normalise_layers([7], 4)


def test_ifa_refuses_other_attention_implementations():
    from transformers import LlamaForCausalLM

    m = LlamaForCausalLM(llama_config(100, 1))
    m.config._attn_implementation_internal = "flex_attention"
    with pytest.raises(InputError, match="sdpa and eager"):
        ifa.install(m)


def test_token_spans_from_offsets():
    offsets = [(0, 0), (0, 3), (3, 4), (4, 9), (9, 10)]
    assert ifa.token_spans(offsets, [(3, 9), (9, 10), (20, 30)]) == [(2, 4), (4, 5), (0, 0)]


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_rows_before_the_question_are_untouched(models, impl):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    ref = LlamaForCausalLM(llama_config(300, 3, initializer_range=0.3)).eval()
    ref.set_attn_implementation(impl)
    m = models[impl]
    ifa.install(m)
    ids = torch.randint(4, 300, (1, 40), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        base = ref(ids).logits
        with ifa.apply(_plan(2.0)):
            biased = m(ids).logits
    assert torch.allclose(base[:, :32], biased[:, :32], atol=1e-6)  # the documents and the prompt before the question
    assert not torch.allclose(base[:, 32:], biased[:, 32:], atol=1e-6)  # the question rows move

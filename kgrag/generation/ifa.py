"""IFA (MR-RAG): relevance-aware attention over the retrieved documents, with no retraining.

In the chosen decoder layers, the attention logit from a question token ``i`` to a
token ``j`` of retrieved document ``k`` becomes::

    logit'_ij = logit_ij + lambda * r_k * |logit_ij|        logit_ij = q_i . k_j / sqrt(d)

with ``r_k`` the min-max normalised fused relevance of document ``k`` (1 for the most
relevant document of the prompt, 0 for the least; all 0 when they are equal).  The
bias is added before the causal/padding mask and the softmax; other rows and columns
are untouched.  "Question tokens" are the rows from the question's first token on: the
question, the chat template's answer cue after it and every generated token (the
answer attends to the documents the same way).  The documents precede the question in
every kgrag prompt; for a report (no question) the rows start after the last document.

How: :func:`install` registers an attention function under a new name in
transformers' ``AttentionInterface`` (and the base implementation's mask builder under
the same name in ``AttentionMaskInterface``) and switches the model's decoder to it
with ``set_attn_implementation``.  The function reads the active :class:`IFAPlan` (a
context variable set by :func:`apply`).  With no plan, ``lambda = 0``, or a layer
outside the plan, it calls the base implementation (``sdpa`` or the model's own
``eager``) with the same arguments, so outputs are bit-identical to the unpatched
model; in a biased layer the question rows are computed in the eager way (scaled dot
product, bias, mask, float32 softmax) and, during prefill, the rows before the
question (unbiased, they see only the prefix) by the base implementation.  Supported: batch size 1 (one prompt per query), the default
dynamic cache.  torch and transformers are imported lazily.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from kgrag.errors import InputError

log = logging.getLogger(__name__)
IMPL_PREFIX = "kgrag_ifa_"
_PLAN: contextvars.ContextVar[IFAPlan | None] = contextvars.ContextVar("kgrag_ifa_plan", default=None)


@dataclass(slots=True)
class IFAPlan:
    lam: float
    doc_spans: Sequence[tuple[int, int]]  # token [start, end) of each document in the prompt
    relevance: Sequence[float]  # r_k in [0, 1], one per document
    query_start: int  # rows at or after this token position are question tokens
    layers: frozenset[int] | None = None  # decoder layer indices; None = all
    record: bool = False  # keep the attention mass per document of each biased layer
    masses: dict[int, list[list[float]]] = field(default_factory=dict)  # layer -> [per call: mass per doc]

    def biased(self, layer: int | None) -> bool:
        return self.lam != 0.0 and layer is not None and (self.layers is None or layer in self.layers)


def normalise_layers(layers: Sequence[int] | None, n_layers: int) -> frozenset[int] | None:
    """Layer indices with negatives counted from the end; None stays None (all layers)."""
    if layers is None:
        return None
    out = set()
    for x in layers:
        y = x + n_layers if x < 0 else x
        if not 0 <= y < n_layers:
            raise InputError(f"IFA layer {x} is outside the model's {n_layers} layers",
                             fix=f"set KGRAG_GENERATION__IFA_LAYERS to indices in [-{n_layers}, {n_layers - 1}]")
        out.add(y)
    return frozenset(out)


@contextlib.contextmanager
def apply(plan: IFAPlan | None) -> Iterator[IFAPlan | None]:
    """Make ``plan`` the active IFA plan for the model calls inside the block."""
    token = _PLAN.set(plan)
    try:
        yield plan
    finally:
        _PLAN.reset(token)


def bias_matrix(plan: IFAPlan, q_len: int, kv_len: int, row0: int | None = None):
    """(q_len, kv_len) float32 tensor of lambda * r_k on (question row, document-k column), else 0.

    Row ``i`` is absolute position ``row0 + i``; by default ``row0 = kv_len - q_len`` (the
    cache holds every earlier token)."""
    import torch

    bias = torch.zeros(q_len, kv_len, dtype=torch.float32)
    row0 = kv_len - q_len if row0 is None else row0
    lo = max(plan.query_start - row0, 0)
    if lo >= q_len:
        return bias
    rows = slice(lo, q_len)
    for (a, b), r in zip(plan.doc_spans, plan.relevance, strict=True):
        a, b = max(a, 0), min(b, kv_len)
        if a < b and r != 0.0:
            bias[rows, a:b] = float(plan.lam) * float(r)
    return bias


def _repeat_kv(x, n_rep: int):
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None, :, :].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def biased_attention(module, query, key, value, attention_mask, *, plan: IFAPlan, scaling: float | None = None,
                     dropout: float = 0.0, row0: int | None = None, **_: Any):
    """Eager attention with the IFA bias; returns (output (b, q, h, d), probabilities (b, h, q, kv)).
    ``row0``: absolute position of the first query row (default: the last ``q`` positions)."""
    import torch

    if query.shape[0] != 1:
        raise InputError("IFA runs one prompt at a time (batch size 1)", fix="generate one query at a time")
    n_rep = getattr(module, "num_key_value_groups", 1)
    k = _repeat_kv(key, n_rep)
    v = _repeat_kv(value, n_rep)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    logits = torch.matmul(query, k.transpose(2, 3)) * scaling
    q_len, kv_len = logits.shape[-2], logits.shape[-1]
    row0 = kv_len - q_len if row0 is None else row0
    bias = bias_matrix(plan, q_len, kv_len, row0).to(device=logits.device, dtype=logits.dtype)
    logits = logits + bias * logits.abs()
    if attention_mask is None:
        pos = torch.arange(row0, row0 + q_len, device=logits.device)[:, None]
        allowed = torch.arange(kv_len, device=logits.device)[None, :] <= pos
        logits = logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)
    elif attention_mask.dtype == torch.bool:
        logits = logits.masked_fill(~attention_mask[..., :kv_len], torch.finfo(logits.dtype).min)
    else:
        logits = logits + attention_mask[..., :kv_len]
    probs = torch.nn.functional.softmax(logits, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = torch.nn.functional.dropout(probs, p=dropout, training=module.training)
    out = torch.matmul(probs, v).transpose(1, 2).contiguous()
    if plan.record:
        plan.masses.setdefault(module.layer_idx, []).append(attention_mass(probs, plan, row0))
    return out, probs


def attention_mass(probs, plan: IFAPlan, row0: int | None = None) -> list[float]:
    """Mean over heads and question rows of the attention probability each document receives
    (``row0``: absolute position of the first row of ``probs``)."""
    q_len, kv_len = probs.shape[-2], probs.shape[-1]
    lo = max(plan.query_start - (kv_len - q_len if row0 is None else row0), 0)
    if lo >= q_len:
        return [0.0 for _ in plan.doc_spans]
    p = probs[0][:, lo:, :].float().mean(dim=(0, 1))
    return [float(p[a:min(b, kv_len)].sum()) for a, b in plan.doc_spans]


def _base_function(base: str, module):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if base == "eager":
        mod = sys.modules.get(type(module).__module__)
        fn = getattr(mod, "eager_attention_forward", None)
        if fn is None:
            raise InputError(f"{type(module).__name__} has no eager attention function for IFA to fall back to",
                             fix="load the model with attn_implementation='sdpa' or leave KGRAG_GENERATION__IFA_LAMBDA at 0")
        return fn
    return ALL_ATTENTION_FUNCTIONS[base]


def _make_forward(base: str):
    def forward(module, query, key, value, attention_mask, *args: Any, **kwargs: Any):
        plan = _PLAN.get()
        layer = getattr(module, "layer_idx", None)
        fn = _base_function(base, module)
        if plan is None or not getattr(module, "_kgrag_ifa", False) or not plan.biased(layer):
            return fn(module, query, key, value, attention_mask, *args, **kwargs)
        q_len, kv_len = query.shape[2], key.shape[2]
        first = kv_len - q_len
        if first + q_len <= plan.query_start:  # no question row in this call
            return fn(module, query, key, value, attention_mask, *args, **kwargs)
        lo = plan.query_start - first
        if first == 0 and lo > 0:
            # prefill: the rows before the question are unbiased and see only the prefix, so the base
            # implementation computes them; the question rows take the biased eager path
            import torch

            m_a = None if attention_mask is None else attention_mask[..., :lo, :lo]
            out_a, _ = fn(module, query[:, :, :lo], key[:, :, :lo], value[:, :, :lo], m_a, *args, **kwargs)
            m_b = None if attention_mask is None else attention_mask[..., lo:, :]
            out_b, _ = biased_attention(module, query[:, :, lo:], key, value, m_b, plan=plan, row0=lo, **kwargs)
            return torch.cat([out_a, out_b], dim=1), None
        return biased_attention(module, query, key, value, attention_mask, plan=plan, **kwargs)

    forward.__name__ = f"{IMPL_PREFIX}{base}"
    return forward


def decoder_attention_modules(model) -> list:
    """The self-attention modules of the language decoder (they carry ``layer_idx`` and read
    the text config), in layer order."""
    text_cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    mods = [m for m in model.modules() if type(m).__name__.endswith("Attention") and hasattr(m, "layer_idx")
            and getattr(m, "config", None) is text_cfg]
    return sorted(mods, key=lambda m: m.layer_idx)


def install(model) -> int:
    """Route the model's decoder attention through the IFA function; returns the number of
    decoder layers.  Idempotent.  The base implementation stays what the model had."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import AttentionInterface

    text_cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    current = text_cfg._attn_implementation
    if current.startswith(IMPL_PREFIX):
        return len(decoder_attention_modules(model))
    if current not in ("sdpa", "eager"):
        raise InputError(f"IFA supports sdpa and eager attention, not {current!r}",
                         fix="load the model with attn_implementation='sdpa' (the default) or set the IFA lambda to 0")
    name = IMPL_PREFIX + current
    AttentionInterface.register(name, _make_forward(current))
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[current])
    mods = decoder_attention_modules(model)
    if not mods:
        raise InputError(f"{type(model).__name__} has no decoder attention modules IFA can address",
                         fix="use a Llama-style causal LM or a LLaVA-style VLM, or set the IFA lambda to 0")
    for m in mods:
        m._kgrag_ifa = True
    if text_cfg is model.config:
        model.set_attn_implementation(name)
    else:
        key = next((k for k in model.config.sub_configs if getattr(model.config, k, None) is text_cfg), None)
        if key is None:
            raise InputError(f"cannot find the text config of {type(model).__name__}", fix="set the IFA lambda to 0")
        model.set_attn_implementation({key: name})
    return len(mods)


def token_spans(offsets: Sequence[tuple[int, int]], char_spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Token [start, end) covering each char span, from a tokenizer's offset mapping."""
    out = []
    for a, b in char_spans:
        toks = [i for i, (s, e) in enumerate(offsets) if e > s and s < b and e > a]
        out.append((toks[0], toks[-1] + 1) if toks else (0, 0))
    return out

"""Tiny randomly initialised transformers models, built offline from a config and saved
to a directory with a tokenizer (a byte-level BPE trained on a few strings) and a chat
template: a Llama-style causal LM and a LLaVA-style VLM (CLIP vision tower + Llama)."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "FINDINGS: Small right pleural effusion. No pneumothorax. Heart size is normal.",
    "IMPRESSION: Findings consistent with pneumonia. No acute cardiopulmonary abnormality.",
    "Image findings (V_I, probability from the image model): lung opacity 0.91",
    "Causal graph, P(concept | V_I): pneumonia 0.81. Causal paths (explanations): strength",
    "Question: Is there pleural effusion? Answer Yes or No first. Yes. No. yes no",
    "Similar prior studies, most relevant first: [syn-00012] rank 1, relevance 1.00",
    "You are a careful radiology assistant. Definitions: Interventions: do(lung opacity = absent)",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: "
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}\n{% endfor %}{% if add_generation_prompt %}<s>assistant: {% endif %}"
)


def tiny_tokenizer(vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>", "<pad>", "<image>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    t = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                extra_special_tokens={"image_token": "<image>"})
    t.chat_template = CHAT_TEMPLATE
    return t


def llama_config(vocab_size: int, layers: int = 2, **kw):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=kw.pop("max_pos", 8192),
                       bos_token_id=1, eos_token_id=2, pad_token_id=3, **kw)


def save_tiny_llama(path: str | Path, *, seed: int = 0, layers: int = 2, max_pos: int = 8192, init: float = 0.02) -> Path:
    import torch
    from transformers import LlamaForCausalLM

    path = Path(path)
    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(len(tok), layers, max_pos=max_pos, initializer_range=init))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def save_tiny_llava(path: str | Path, *, seed: int = 0, init: float = 0.02) -> Path:
    import torch
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    path = Path(path)
    tok = tiny_tokenizer()
    ip = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    proc = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                          chat_template=CHAT_TEMPLATE, num_additional_image_tokens=1)
    vc = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                          patch_size=8, projection_dim=32)
    cfg = LlavaConfig(vision_config=vc, text_config=llama_config(len(tok), initializer_range=init), image_token_index=tok.convert_tokens_to_ids("<image>"),
                      vision_feature_layer=-1, projector_hidden_act="gelu")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(cfg)
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return path

"""LoRA fine-tuning of a local transformers generator on kgrag's own prompts (MCRAG: LoRA + AdamW).

Each training example is the prompt the transformers generator would build from an
evidence bundle of a train-split study (its own image as the query, the study itself
removed from its evidence) and, as the target, the study's own report ("FINDINGS: ...
IMPRESSION: ...") or its answer to one of its manifest questions ("Yes." / "No.").
Test-split studies never enter: :func:`finetune` refuses them
(:class:`~kgrag.errors.TestLeakError`).  The loss is the causal-LM cross-entropy of
the target tokens only (prompt tokens are masked).

The adapter is written with ``peft`` under ``$KGRAG_HOME/models/<name>/`` with a
``manifest.json`` (base model path, LoRA configuration, data hash, graph and index
versions, prompt version, steps, losses) and intermediate checkpoints under
``checkpoints/step-<n>/``.  ``kgrag query --generator transformers --model-path
$KGRAG_HOME/models/<name>`` loads the base model and the adapter.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kgrag.errors import InputError, TestLeakError
from kgrag.generation.evidence import EvidenceBundle

log = logging.getLogger(__name__)
MANIFEST_KIND = "kgrag-lora-adapter"


@dataclass(slots=True)
class Example:
    study_id: str
    split: str
    task: str  # report | closed_vqa | open_vqa | diagnosis
    bundle: EvidenceBundle
    target: str


@dataclass(slots=True)
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] | None = None  # None: peft's default for the architecture


@dataclass(slots=True)
class FinetuneReport:
    out_dir: str
    n_examples: int
    n_studies: int
    steps: int
    losses: list[float] = field(default_factory=list)
    loss_before: float | None = None  # mean target loss over the examples, before training
    loss_after: float | None = None
    data_hash: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def report_target(findings: str | None, impression: str | None, report: str | None = None) -> str:
    parts = []
    if findings and findings.strip():
        parts.append(f"FINDINGS: {findings.strip()}")
    if impression and impression.strip():
        parts.append(f"IMPRESSION: {impression.strip()}")
    return " ".join(parts) or (report or "").strip()


def data_hash(examples: Sequence[Example], prompt_version: str) -> str:
    """sha256 over (study, task, bundle, target) of every example, in order, and the prompt set."""
    h = hashlib.sha256(prompt_version.encode())
    for ex in examples:
        h.update(json.dumps([ex.study_id, ex.split, ex.task, ex.bundle.to_dict(), ex.target], sort_keys=True,
                            default=str).encode())
    return "d-" + h.hexdigest()[:16]


def check_examples(examples: Sequence[Example]) -> None:
    if not examples:
        raise InputError("no training examples", fix="the home needs train-split studies with images (kgrag ingest, train, index build)")
    leaked = sorted({ex.study_id for ex in examples if ex.split == "test"})
    if leaked:
        raise TestLeakError(f"test-split studies {leaked[:5]} would enter fine-tuning",
                            fix="build examples from train-split studies only")
    own = sorted({ex.study_id for ex in examples if ex.study_id in ex.bundle.evidence_ids})
    if own:
        raise InputError(f"studies {own[:5]} are in their own evidence", fix="drop each study from its bundle (bundle.without)")


class _Data:
    """Tokenised examples: the generator's own prompt encoding, then the target and EOS."""

    def __init__(self, gen: Any, examples: Sequence[Example]) -> None:
        import torch

        self.items = []
        tok = gen.tokenizer
        eos = tok.eos_token or ""
        for ex in examples:
            target_ids = tok(" " + ex.target.strip() + eos, add_special_tokens=False)["input_ids"]
            keep = gen.max_new_tokens
            gen.max_new_tokens = len(target_ids)  # fit the prompt so prompt + target is within the context
            try:
                enc = gen._fit(ex.bundle, ex.task)
            finally:
                gen.max_new_tokens = keep
            inputs = dict(enc["inputs"])
            ids = inputs["input_ids"]
            t = torch.tensor([target_ids], dtype=ids.dtype)
            inputs["input_ids"] = torch.cat([ids, t], dim=1)
            inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
            labels = torch.full_like(inputs["input_ids"], -100)
            labels[0, ids.shape[1]:] = t[0]
            inputs["labels"] = labels
            self.items.append(inputs)
        self.prompt_version = enc["version"] if examples else ""


def _loss(model: Any, inputs: dict[str, Any], device: str):
    return model(**{k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}).loss


def finetune(model_path: str | Path, examples: Sequence[Example], out_dir: str | Path, *, steps: int = 100,
             lr: float = 2e-4, batch_size: int = 1, lora: LoraSettings | None = None, seed: int = 13,
             device: str = "auto", checkpoint_every: int = 0, graph_version: str | None = None,
             index_version: str | None = None, progress: bool = False, max_docs: int = 5) -> FinetuneReport:
    """Train a LoRA adapter for ``steps`` AdamW steps on ``examples``; write it to ``out_dir``."""
    from kgrag.deps import require

    torch = require("torch")
    peft = require("peft")
    from kgrag.generation.hf import TransformersGenerator

    check_examples(examples)
    if steps < 1 or batch_size < 1:
        raise InputError("steps and batch size must be at least 1", fix="e.g. --steps 100 --batch-size 1")
    lora = lora or LoraSettings()
    t0 = time.perf_counter()
    random.seed(seed)
    torch.manual_seed(seed)
    gen = TransformersGenerator(model_path, device=device, max_docs=max_docs)
    gen.warm_up()
    if gen.adapter_path is not None:
        raise InputError(f"{model_path} is already a LoRA adapter", fix="fine-tune from the base model directory")
    data = _Data(gen, examples)
    dhash = data_hash(examples, data.prompt_version)
    cfg = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
                          task_type="CAUSAL_LM")
    model = peft.get_peft_model(gen.model_obj, cfg)
    dev = gen.device

    def mean_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(sum(_loss(model, x, dev).item() for x in data.items) / len(data.items))

    before = mean_loss()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    order: list[int] = []
    rng = random.Random(seed)
    losses: list[float] = []
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="finetune", unit="step")
    for step in range(1, steps + 1):
        model.train()
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(batch_size):
            if not order:
                order = list(range(len(data.items)))
                rng.shuffle(order)
            loss = _loss(model, data.items[order.pop()], dev) / batch_size
            loss.backward()
            total += float(loss.item())
        opt.step()
        losses.append(round(total, 6))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{total:.3f}")
        if checkpoint_every and step % checkpoint_every == 0 and step < steps:
            model.save_pretrained(tmp / "checkpoints" / f"step-{step}")
    if bar is not None:
        bar.close()
    after = mean_loss()
    model.save_pretrained(tmp)
    from kgrag import __version__

    rep = FinetuneReport(str(out), len(examples), len({e.study_id for e in examples}), steps, losses, round(before, 6),
                         round(after, 6), dhash, round(time.perf_counter() - t0, 3))
    manifest = {
        "kind": MANIFEST_KIND, "kgrag_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base_model_path": str(Path(model_path).expanduser().resolve()),
        "lora": {"r": lora.r, "alpha": lora.alpha, "dropout": lora.dropout, "target_modules": sorted(cfg.target_modules)
                 if cfg.target_modules else None},
        "optimizer": {"name": "AdamW", "lr": lr, "batch_size": batch_size, "steps": steps, "seed": seed},
        "data_hash": dhash, "n_examples": rep.n_examples, "n_studies": rep.n_studies, "splits": sorted({e.split for e in examples}),
        "tasks": sorted({e.task for e in examples}), "prompt_version": data.prompt_version,
        "graph_version": graph_version, "index_version": index_version,
        "loss_before": rep.loss_before, "loss_after": rep.loss_after, "losses": losses,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    log.info("LoRA adapter written to %s (loss %.4f -> %.4f)", out, before, after)
    return rep


def read_manifest(path: str | Path) -> dict[str, Any]:
    p = Path(path) / "manifest.json"
    if not p.is_file():
        raise InputError(f"{path} has no manifest.json", fix="point at a 'kgrag finetune' output directory")
    return json.loads(p.read_text())

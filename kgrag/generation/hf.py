"""A local transformers model as the generator (``--generator transformers --model-path DIR``).

- Any causal LM (``AutoModelForCausalLM`` + tokenizer) or vision-language model
  (``AutoModelForImageTextToText`` + processor) saved in a local directory; a
  ``kgrag finetune`` output (a LoRA adapter with its manifest) loads its base model and
  the adapter.  Only local files are read (``local_files_only``): a missing path is a
  :class:`~kgrag.errors.ModelNotFoundError` naming ``KGRAG_GENERATION__MODEL_PATH``.
- The prompt is the versioned template for the task (:mod:`kgrag.generation.prompts`)
  through the model's chat template (a plain "System/User/Assistant" layout,
  ``plain.v1``, when the tokenizer has none); the query images go in when the model
  has a processor that takes them.
- Greedy decoding, at most ``max_new_tokens`` new tokens; device ``auto`` is CUDA when
  present.  When the prompt is longer than the model's context, the least relevant
  evidence documents are dropped until it fits.
- Closed questions: ``P(yes)`` is the model's next-token probability of "yes" against
  "no" at the first answer position (``lm.yes_no.v1``); the answer word is the text's
  first yes/no, else that probability's side.
- IFA (MR-RAG) when ``ifa_lambda > 0`` (:mod:`kgrag.generation.ifa`).

torch and transformers are imported when the model loads, never at import.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kgrag.errors import ConfigError, ModelMismatchError, ModelNotFoundError
from kgrag.generation.base import (
    CLOSED_VQA,
    DIAGNOSIS,
    REPORT,
    YES_NO_SCHEME,
    Answer,
    check_task,
    cited,
    explanation,
    set_yes_no,
)
from kgrag.generation.evidence import EvidenceBundle
from kgrag.generation.prompts import PROMPT_SET, Prompt, build_prompt

log = logging.getLogger(__name__)
PLAIN_TEMPLATE = "plain.v1"


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _missing(path: Path | None) -> ModelNotFoundError:
    what = "is not set" if path is None else f"{str(path)!r} is not a local model directory (no config.json)"
    return ModelNotFoundError(f"the transformers generator's model path {what}",
                              fix="pass --model-path DIR or set KGRAG_GENERATION__MODEL_PATH to a local transformers model "
                                  "directory; kgrag never downloads models")


class TransformersGenerator:
    name = "transformers"

    def __init__(self, model_path: str | Path | None, *, max_new_tokens: int = 256, device: str = "auto",
                 ifa_lambda: float = 0.0, ifa_layers: Sequence[int] | None = None, prompt_set: str = PROMPT_SET,
                 progress: bool = False, max_docs: int = 10) -> None:
        self.model_path = Path(model_path).expanduser() if model_path else None
        self.max_new_tokens, self.device_setting = max_new_tokens, device
        self.ifa_lambda, self.ifa_layers, self.prompt_set = float(ifa_lambda), ifa_layers, prompt_set
        self.progress, self.max_docs = progress, max_docs
        self.model_obj = self.tokenizer = self.processor = None
        self.device = None
        self.is_vlm = False
        self.base_path: Path | None = None
        self.adapter_path: Path | None = None
        self._ifa_layers: frozenset[int] | None = None

    @classmethod
    def from_settings(cls, settings: Any, *, model_path: str | Path | None = None, progress: bool = False,
                      **_: Any) -> TransformersGenerator:
        g = settings.generation
        return cls(model_path or g.model_path, max_new_tokens=g.max_new_tokens, device=g.device, ifa_lambda=g.ifa_lambda,
                   ifa_layers=g.ifa_layers, progress=progress)

    @property
    def model(self) -> str | None:
        return None if self.model_path is None else self.model_path.name

    @property
    def prompt_version(self) -> str:
        return self.prompt_set

    # -- loading ---------------------------------------------------------------------------
    def _paths(self) -> tuple[Path, Path | None]:
        p = self.model_path
        if p is None or not p.is_dir():
            raise _missing(p)
        if (p / "adapter_config.json").is_file():
            base = None
            man = p / "manifest.json"
            if man.is_file():
                base = json.loads(man.read_text()).get("base_model_path")
            if base is None:
                base = json.loads((p / "adapter_config.json").read_text()).get("base_model_name_or_path")
            base_p = Path(base) if base else None
            if base_p is None or not (base_p / "config.json").is_file():
                raise ModelNotFoundError(f"the adapter at {str(p)!r} names base model {base!r}, which is not a local directory",
                                         fix="restore the base model at that path, or re-run kgrag finetune")
            return base_p, p
        if not (p / "config.json").is_file():
            raise _missing(p)
        return p, None

    def warm_up(self) -> None:
        if self.model_obj is not None:
            return
        from kgrag.deps import require

        require("torch")
        tf = require("transformers")
        base, adapter = self._paths()
        self.base_path, self.adapter_path = base, adapter
        kw = {"local_files_only": True}
        try:
            config = tf.AutoConfig.from_pretrained(base, **kw)
            has_proc = any((base / f).is_file() for f in ("processor_config.json", "preprocessor_config.json"))
            from transformers.models.auto.modeling_auto import (
                MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
            )

            self.is_vlm = has_proc and config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
            if self.is_vlm:
                model = tf.AutoModelForImageTextToText.from_pretrained(base, **kw)
                self.processor = tf.AutoProcessor.from_pretrained(base, **kw)
                self.tokenizer = getattr(self.processor, "tokenizer", None)
            else:
                model = tf.AutoModelForCausalLM.from_pretrained(base, **kw)
                self.tokenizer = tf.AutoTokenizer.from_pretrained(base, **kw)
        except OSError as e:
            raise ModelNotFoundError(f"cannot load a transformers model from {str(base)!r}: {e}",
                                     fix="point KGRAG_GENERATION__MODEL_PATH at a complete local model directory "
                                         "(config.json, weights, tokenizer)") from e
        if adapter is not None:
            peft = require("peft")
            model = peft.PeftModel.from_pretrained(model, str(adapter))
        self.device = resolve_device(self.device_setting)
        self.model_obj = model.to(self.device).eval()
        if self.ifa_lambda > 0:
            from kgrag.generation import ifa

            core = model.get_base_model() if adapter is not None else model
            n_layers = ifa.install(core)
            self._ifa_layers = ifa.normalise_layers(self.ifa_layers, n_layers)
        log.info("transformers generator: %s on %s (vlm=%s, adapter=%s)", base, self.device, self.is_vlm, adapter)

    def close(self) -> None:
        self.model_obj = self.tokenizer = self.processor = None

    @property
    def info(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "model": self.model, "prompt_version": self.prompt_set,
                             "path": None if self.model_path is None else str(self.model_path), "device": self.device}
        if self.adapter_path is not None:
            d["base_model"] = str(self.base_path)
        d["ifa"] = {"lambda": self.ifa_lambda, "layers": None if self._ifa_layers is None else sorted(self._ifa_layers)}
        return d

    # -- prompting -------------------------------------------------------------------------
    def _template_text(self, prompt: Prompt, n_images: int) -> tuple[str, str]:
        """(full prompt text, template name)."""
        owner = self.processor if self.is_vlm and self.processor is not None else self.tokenizer
        has_template = bool(getattr(owner, "chat_template", None) or getattr(self.tokenizer, "chat_template", None))
        if has_template:
            text = owner.apply_chat_template(prompt.messages(n_images), tokenize=False, add_generation_prompt=True)
            return text, prompt.version
        if n_images:
            raise ModelMismatchError("the VLM's processor has no chat template, so kgrag cannot place the images",
                                  fix="use a model directory whose processor or tokenizer has a chat template")
        return f"System:\n{prompt.system}\n\nUser:\n{prompt.user}\n\nAssistant:\n", f"{prompt.version}+{PLAIN_TEMPLATE}"

    def encode(self, bundle: EvidenceBundle, task: str, max_docs: int | None = None, max_definitions: int = 5) -> dict[str, Any]:
        """Tokenised inputs for ``task`` and the token spans IFA needs."""
        self.warm_up()
        prompt = build_prompt(bundle, task, version=self.prompt_set, max_docs=self.max_docs if max_docs is None else max_docs,
                              max_definitions=max_definitions)
        images = []
        if self.is_vlm and prompt.images:
            from kgrag.generation.media import pil_image

            images = [pil_image(p) for p in prompt.images]
        text, version = self._template_text(prompt, len(images))
        tok = self.tokenizer
        plain = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        if images:
            inputs = self.processor(text=text, images=images, return_tensors="pt", add_special_tokens=False)
        else:
            import torch

            inputs = {"input_ids": torch.tensor([plain["input_ids"]]), "attention_mask": torch.ones(1, len(plain["input_ids"]), dtype=torch.long)}
        n = int(inputs["input_ids"].shape[1])
        delta = n - len(plain["input_ids"])  # image tokens the processor expanded (they precede the user text)
        start = text.rfind(prompt.user)
        spans: dict[str, Any] = {"docs": [], "question": None}
        if start >= 0:
            from kgrag.generation.ifa import token_spans

            docs = token_spans(plain["offset_mapping"], [(a + start, b + start) for a, b in prompt.doc_spans])
            spans["docs"] = [(a + delta, b + delta) for a, b in docs]
            if prompt.question_span:
                a, b = prompt.question_span
                (x, y), = token_spans(plain["offset_mapping"], [(a + start, b + start)])
                spans["question"] = (x + delta, y + delta)
            # IFA rows: the question and all after it; without a question, all after the last document
            spans["query_start"] = spans["question"][0] if spans["question"] else (spans["docs"][-1][1] if spans["docs"] else n)
        return {"inputs": inputs, "prompt": prompt, "version": version, "text": text, "spans": spans, "n_tokens": n}

    def _context_limit(self) -> int | None:
        cfg = self.model_obj.config
        cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        return getattr(cfg, "max_position_embeddings", None)

    def _fit(self, bundle: EvidenceBundle, task: str) -> dict[str, Any]:
        self.warm_up()
        limit = self._context_limit()
        docs = min(self.max_docs, len(bundle.evidence))
        defs = 5
        while True:
            enc = self.encode(bundle, task, max_docs=docs, max_definitions=defs)
            if limit is None or enc["n_tokens"] + self.max_new_tokens <= limit:
                return enc
            # shed the least relevant documents first, keeping one; then the definitions; then the last document
            if docs > 1:
                docs -= 1
            elif defs > 0:
                defs = 0
            elif docs == 1:
                docs = 0
            else:
                raise ConfigError(f"the prompt needs {enc['n_tokens']} tokens and {self.max_new_tokens} new ones; "
                                  f"the model's context is {limit}",
                                  fix="lower KGRAG_GENERATION__MAX_NEW_TOKENS or use a model with a longer context")
            log.info("prompt too long for the context (%d tokens): %d evidence documents, %d definitions", enc["n_tokens"],
                     docs, defs)

    def _yes_no_ids(self) -> tuple[list[int], list[int]]:
        def first(words: Sequence[str]) -> list[int]:
            out = set()
            for w in words:
                ids = self.tokenizer.encode(w, add_special_tokens=False)
                if ids:
                    out.add(ids[0])
            return sorted(out)

        yes, no = first(["Yes", " Yes", "yes", " yes"]), first(["No", " No", "no", " no"])
        shared = set(yes) & set(no)
        return [i for i in yes if i not in shared], [i for i in no if i not in shared]

    # -- generation ------------------------------------------------------------------------
    def run(self, bundle: EvidenceBundle, task: str) -> dict[str, Any]:
        """Generate for ``task``; returns the text, the first-step logits and the encoding."""
        import torch

        from kgrag.generation import ifa

        self.warm_up()
        enc = self._fit(bundle, task)
        inputs = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in dict(enc["inputs"]).items()}
        plan = None
        if self.ifa_lambda > 0 and enc["spans"]["docs"]:
            plan = ifa.IFAPlan(self.ifa_lambda, enc["spans"]["docs"], enc["prompt"].relevance, enc["spans"]["query_start"],
                               self._ifa_layers)
        stopping = []
        bar = None
        if self.progress:
            from tqdm.auto import tqdm
            from transformers import StoppingCriteria

            bar = tqdm(total=self.max_new_tokens, desc="generating", unit="tok", leave=False)

            class _Tick(StoppingCriteria):
                def __call__(self, input_ids, scores, **kwargs):
                    bar.update(1)
                    return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

            stopping.append(_Tick())
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        try:
            with torch.no_grad(), ifa.apply(plan):
                out = self.model_obj.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
                                              return_dict_in_generate=True, output_logits=True, pad_token_id=pad,
                                              stopping_criteria=stopping or None)
        except (RuntimeError, ValueError) as e:
            raise ModelMismatchError(f"generation with {self.model_path} failed: {e}",
                                  fix="check that the model directory holds a generative model and its tokenizer") from e
        finally:
            if bar is not None:
                bar.close()
        new = out.sequences[0, enc["n_tokens"]:]
        text = tok.decode(new, skip_special_tokens=True).strip()
        first = out.logits[0][0].float().cpu() if out.logits else None
        return {"text": text, "first_logits": first, "encoding": enc, "n_new": int(new.shape[0])}

    def generate(self, bundle: EvidenceBundle, task: str | None = None) -> Answer:
        task = check_task(task, bundle)
        r = self.run(bundle, task)
        text = r["text"]
        q = bundle.question
        concept = q.concept if q is not None else None
        ans = Answer(text or "(the model wrote nothing)", task=task, concept=concept)
        ans.citations, ans.unresolved_citations = cited(text, bundle)
        info = self.info
        info["prompt_version"] = r["encoding"]["version"]
        ans.generator = info
        if q is not None:
            ans.intent = q.intent
        if task == CLOSED_VQA and concept is not None:
            import torch

            yes, no = self._yes_no_ids()
            if yes and no and r["first_logits"] is not None:
                lp = torch.log_softmax(r["first_logits"], dim=-1)
                ly, ln = torch.logsumexp(lp[yes], 0), torch.logsumexp(lp[no], 0)
                ans.probability = float(torch.sigmoid(ly - ln))
                ans.scheme = YES_NO_SCHEME
            set_yes_no(ans, text)
            ans.polarity = q.polarity
        if task == DIAGNOSIS:
            top = bundle.diagnoses(informed=True)
            concept = top[0].concept if top else None
        if task == REPORT:
            concept = None
        ans.paths, ans.counterfactuals = explanation(bundle, concept)
        if concept is not None and bundle.graph_has_opinion(concept):
            ans.posterior = bundle.posterior(concept)
        return ans


def check_model_path(path: str | Path | None) -> Path:
    """``path`` as a local model directory, or the error that names the setting."""
    if path is None:
        raise ConfigError("no model path given", fix="pass --model-path DIR or set KGRAG_GENERATION__MODEL_PATH")
    p = Path(path).expanduser()
    if not (p / "config.json").is_file() and not (p / "adapter_config.json").is_file():
        raise _missing(p)
    return p

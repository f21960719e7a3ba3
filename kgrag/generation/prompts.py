"""Versioned prompt templates (package data ``generation/prompts/<task>.<version>.txt``).

A template file has a ``=== system ===`` and a ``=== user ===`` section, with named
placeholders (``{evidence}``, ``{question}`` ...) filled from an
:class:`~kgrag.generation.evidence.EvidenceBundle` by :func:`build_prompt`.  The
renderer records where each evidence document and the question land in the user
message (character spans), which IFA maps to token positions.  A template's name,
``closed_vqa.v1``, is the ``prompt_version`` every answer reports; changing a
template's meaning means a new file, so old runs stay reproducible.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from kgrag.errors import InputError
from kgrag.generation.base import TASKS
from kgrag.generation.evidence import EvidenceBundle

PROMPT_SET = "v1"
PLACEHOLDERS = ("image_findings", "posteriors", "paths", "counterfactuals", "definitions", "evidence", "question", "first_id")


@dataclass(frozen=True, slots=True)
class Template:
    name: str  # e.g. "closed_vqa.v1"
    system: str
    user: str


@dataclass(slots=True)
class Prompt:
    version: str
    system: str
    user: str
    doc_ids: list[str] = field(default_factory=list)
    doc_spans: list[tuple[int, int]] = field(default_factory=list)  # char spans in ``user``, one per evidence item
    relevance: list[float] = field(default_factory=list)  # r_k of each document (min-max normalised fused relevance)
    question_span: tuple[int, int] | None = None  # char span of the question in ``user``
    images: tuple[str, ...] = ()

    def messages(self, n_images: int = 0) -> list[dict]:
        """Chat messages; ``n_images`` image parts lead the user turn (VLM processors)."""
        if n_images:
            user: object = [*({"type": "image"} for _ in range(n_images)), {"type": "text", "text": self.user}]
        else:
            user = self.user
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


@cache
def load_template(task: str, version: str = PROMPT_SET) -> Template:
    if task not in TASKS:
        raise InputError(f"no prompt for task {task!r}", fix=f"use one of {', '.join(TASKS)}")
    name = f"{task}.{version}"
    try:
        text = resources.files("kgrag.generation").joinpath("prompts", f"{name}.txt").read_text("utf-8")
    except FileNotFoundError as e:
        raise InputError(f"prompt template {name!r} is not installed", fix="reinstall kgrag (package data generation/prompts)") from e
    parts: dict[str, list[str]] = {}
    cur = None
    for line in text.splitlines():
        head = line.strip()
        if head.startswith("===") and head.endswith("==="):
            cur = head.strip("= ").lower()
            parts[cur] = []
        elif cur is not None:
            parts[cur].append(line)
    if set(parts) != {"system", "user"}:
        raise InputError(f"prompt template {name!r} needs exactly a system and a user section", fix="fix the template file")
    for sec in parts.values():
        for _, field_name, _, _ in string.Formatter().parse("\n".join(sec)):
            if field_name is not None and field_name not in PLACEHOLDERS:
                raise InputError(f"prompt template {name!r} uses unknown placeholder {{{field_name}}}",
                                 fix=f"use only {', '.join(PLACEHOLDERS)}")
    return Template(name, "\n".join(parts["system"]).strip(), "\n".join(parts["user"]).strip())


def _fill(template: str, values: dict[str, str]) -> tuple[str, dict[str, tuple[int, int]]]:
    """``template`` with placeholders replaced, and the char span each placeholder's value took."""
    out: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    pos = 0
    for literal, name, _, _ in string.Formatter().parse(template):
        out.append(literal)
        pos += len(literal)
        if name is not None:
            v = values[name]
            spans.setdefault(name, (pos, pos + len(v)))
            out.append(v)
            pos += len(v)
    return "".join(out), spans


# -- blocks ----------------------------------------------------------------------------------
def _image_findings(b: EvidenceBundle, limit: int = 12) -> str:
    rows = sorted(b.image_findings, key=lambda f: -f.probability)[:limit]
    if not rows and b.observed:
        return "\n".join(f"- {b.name(c)}: {q:.2f} (stated in the findings text)" for c, q in b.observed.items())
    return "\n".join(f"- {b.name(f.concept)}: {f.probability:.2f}" for f in rows) or "- none (no image)"


def _focus(b: EvidenceBundle) -> list[str]:
    asked = list(b.question.concepts) if b.question else []
    ds = [d.concept for d in b.diagnoses(informed=True)[:4]]
    return list(dict.fromkeys([*asked, *ds]))


def _posteriors(b: EvidenceBundle, limit: int = 12) -> str:
    keep = _focus(b)
    rest = sorted((p for c, p in b.posteriors.items() if c not in keep and p.probability >= 0.2), key=lambda p: -p.probability)
    rows = [b.posteriors[c] for c in keep if c in b.posteriors] + rest
    return "\n".join(f"- {b.name(p.concept)}: {p.probability:.2f}" for p in rows[:limit]) or "- none"


def _paths(b: EvidenceBundle, limit: int = 6) -> str:
    rows = []
    for c in _focus(b):
        p = b.posteriors.get(c)
        for x in (p.paths[:2] if p else ()):
            rows.append(f"- {' → '.join(b.name(n) for n in x.nodes)} (strength {x.strength:.2f})")
    return "\n".join(rows[:limit]) or "- none"


def _counterfactuals(b: EvidenceBundle, limit: int = 6) -> str:
    rows = []
    for c in _focus(b):
        p = b.posteriors.get(c)
        for cf in (p.counterfactuals[:2] if p else ()):
            rows.append(f"- {cf.describe(b.names)}: P({b.name(c)}) = {cf.probability:.2f} (now {p.probability:.2f})")
    return "\n".join(rows[:limit]) or "- none"


def _definitions(b: EvidenceBundle, limit: int = 5) -> str:
    return "\n".join(f"- {d.name}: {d.definition}" for d in b.definitions[:max(limit, 0)]) or "- none"


def _evidence(b: EvidenceBundle, max_docs: int, max_chars: int) -> tuple[str, list[str], list[tuple[int, int]], list[float]]:
    rel = b.relevance()
    parts, ids, spans, rs = [], [], [], []
    pos = 0
    for e, r in list(zip(b.evidence, rel, strict=True))[:max_docs]:
        body = []
        for sec in ("findings", "impression"):
            text = e.section_text(sec)
            if text:
                body.append(f"{sec.upper()}: {text}")
        other = e.section_text("other", "indication", "comparison")
        if not body and other:
            body.append(other)
        text = f"[{e.id}] rank {e.rank}, relevance {r:.2f}\n" + ("\n".join(body) or "(no report text)")[:max_chars]
        if parts:
            pos += 2  # the blank line between documents
        spans.append((pos, pos + len(text)))
        ids.append(e.id)
        rs.append(r)
        parts.append(text)
        pos += len(text)
    return "\n\n".join(parts) or "(no similar studies)", ids, spans, rs


def build_prompt(bundle: EvidenceBundle, task: str, *, version: str = PROMPT_SET, max_docs: int = 10,
                 max_doc_chars: int = 700, max_definitions: int = 5) -> Prompt:
    """The prompt for ``task`` from ``bundle`` alone (at most ``max_docs`` evidence documents,
    the most relevant, and ``max_definitions`` definitions)."""
    t = load_template(task, version)
    ev_text, ids, doc_spans, rel = _evidence(bundle, max_docs, max_doc_chars)
    question = bundle.query.question or (bundle.question.text if bundle.question else "")
    values = {"image_findings": _image_findings(bundle), "posteriors": _posteriors(bundle), "paths": _paths(bundle),
              "counterfactuals": _counterfactuals(bundle), "definitions": _definitions(bundle, max_definitions), "evidence": ev_text,
              "question": question, "first_id": ids[0] if ids else "s1"}
    system, _ = _fill(t.system, values)
    user, spans = _fill(t.user, values)
    off = spans["evidence"][0] if "evidence" in spans else 0
    q_span = spans.get("question") if question else None
    return Prompt(t.name, system, user, ids, [(a + off, b + off) for a, b in doc_spans], rel, q_span, tuple(bundle.query.images))

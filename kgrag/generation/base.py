"""The generator protocol, the answer record and the registry of generators.

``Generator.generate(bundle, task) -> Answer`` for the tasks ``report``,
``closed_vqa``, ``open_vqa`` and ``diagnosis``.  :func:`make_generator` builds the one
``KGRAG_GENERATION__KIND`` (or ``kgrag query --generator``) names:

- ``grounded``: the offline writer (:mod:`kgrag.generation.grounded`), the default;
- ``transformers``: a local causal LM or vision-language model (:mod:`kgrag.generation.hf`);
- ``http``: an OpenAI-compatible chat-completions server (:mod:`kgrag.generation.remote`).

An :class:`Answer` is the ``answer`` object of the ``kgrag query --json`` contract:
its text cites evidence as ``[<evidence id>]`` (and ``[V_I]`` for what the image model
reports), and ``citations`` lists the cited evidence ids that resolve in the bundle.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from kgrag.errors import InputError
from kgrag.generation.evidence import EvidenceBundle

REPORT, CLOSED_VQA, OPEN_VQA, DIAGNOSIS = "report", "closed_vqa", "open_vqa", "diagnosis"
TASKS = (REPORT, CLOSED_VQA, OPEN_VQA, DIAGNOSIS)
IMAGE_CITE = "V_I"  # the citation marker of statements that rest on the image model's V_I

#: --generator name -> "module:class"
GENERATORS: dict[str, str] = {
    "grounded": "kgrag.generation.grounded:GroundedGenerator",
    "transformers": "kgrag.generation.hf:TransformersGenerator",
    "http": "kgrag.generation.remote:HTTPGenerator",
}


@dataclass(slots=True)
class Answer:
    text: str
    yes_no: str | None = None  # "yes" | "no" | None
    probability: float | None = None  # closed VQA: P(yes); diagnosis: P(top diagnosis | V_I)
    posterior: float | None = None  # P(concept | V_I) from the causal graph, when it has an opinion
    task: str = REPORT
    intent: str | None = None
    concept: str | None = None
    polarity: str | None = None
    citations: list[str] = field(default_factory=list)
    paths: list[dict[str, Any]] = field(default_factory=list)
    counterfactuals: list[dict[str, Any]] = field(default_factory=list)
    sentences: list[dict[str, Any]] = field(default_factory=list)  # provenance of each written sentence
    generator: dict[str, Any] = field(default_factory=dict)  # name, model, prompt_version
    scheme: str | None = None  # how ``probability`` was computed
    label: str | None = None  # "unparsed": the question was not understood
    unresolved_citations: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("probability", "posterior"):
            if d[k] is not None:
                d[k] = round(float(d[k]), 6)
        return d


@runtime_checkable
class Generator(Protocol):
    name: str
    model: str | None
    prompt_version: str

    def warm_up(self) -> None: ...

    def generate(self, bundle: EvidenceBundle, task: str | None = None) -> Answer: ...

    def close(self) -> None: ...


def task_for(bundle: EvidenceBundle) -> str:
    """The task a bundle's question asks for: no question -> report; a yes/no question ->
    closed VQA; "most likely diagnosis" -> diagnosis; anything else -> open VQA."""
    p = bundle.question
    if p is None:
        return REPORT
    return {"closed": CLOSED_VQA, "diagnosis": DIAGNOSIS}.get(p.intent, OPEN_VQA)


def check_task(task: str | None, bundle: EvidenceBundle) -> str:
    t = task or task_for(bundle)
    if t not in TASKS:
        raise InputError(f"unknown generation task {t!r}", fix=f"use one of {', '.join(TASKS)}")
    return t


_CITE = re.compile(r"\[([^\[\]\s,;]+)\]")
#: The probability scheme of a language model's closed answer: P(yes) from its first-token logits.
YES_NO_SCHEME = "lm.yes_no.v1"
_YES_NO = re.compile(r"^\W*(yes|no)\b", re.I)


def set_yes_no(ans: Answer, text: str) -> None:
    """A closed answer's ``yes_no``: the word the model's text starts with, else its probability's side."""
    m = _YES_NO.match(text)
    if m:
        ans.yes_no = m.group(1).lower()
    elif ans.probability is not None:
        ans.yes_no = "yes" if ans.probability >= 0.5 else "no"


def cited(text: str, bundle: EvidenceBundle) -> tuple[list[str], list[str]]:
    """Evidence ids cited in ``text`` as ``[id]``, in first-cited order: (resolved, unresolved).
    ``[V_I]`` is the image model, neither."""
    ids = set(bundle.evidence_ids)
    ok, bad = [], []
    for m in _CITE.finditer(text):
        x = m.group(1)
        if x == IMAGE_CITE:
            continue
        (ok if x in ids else bad).append(x)
    return list(dict.fromkeys(ok)), list(dict.fromkeys(bad))


def explanation(bundle: EvidenceBundle, concept: str | None, *, limit: int = 3) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The paths and counterfactuals of ``concept`` from the bundle, as contract dicts.

    A concept the graph infers gets the paths into it and the do() of its V_I ancestors
    that move P(concept).  A concept of V_I is an observation (a soft root: nothing
    upstream moves it), so it gets what it explains instead: the paths from it to the
    diagnoses, and do(concept = absent) on each diagnosis it moves."""
    post = bundle.posteriors.get(concept) if concept else None
    if post is None:
        return [], []
    paths = [{"nodes": list(p.nodes), "strength": round(p.strength, 6)} for p in post.paths[:limit]]
    cfs = _moved(bundle, post)
    if concept in bundle.observed:
        down = [(p, d) for d in bundle.posteriors.values() if d.concept != concept and bundle.role(d.concept) == "Diagnosis"
                for p in d.paths if concept in p.nodes[:-1]]
        down.sort(key=lambda x: (-x[0].strength, x[1].concept))
        if down:
            paths = [{"nodes": list(p.nodes[p.nodes.index(concept):]), "strength": round(p.strength, 6)} for p, _ in down[:limit]]
        own = [cf for d in bundle.posteriors.values() if d.concept != concept and bundle.role(d.concept) == "Diagnosis"
               for cf in _moved(bundle, d) if cf["do"] == {concept: 0}]
        own.sort(key=lambda c: -abs(c["probability"] - c["baseline"]))
        cfs = own + [c for c in cfs if c not in own]
    return paths, cfs


def _moved(bundle: EvidenceBundle, post: Any) -> list[dict[str, Any]]:
    """The counterfactuals of ``post`` that change P(post.concept), largest change first."""
    moved = sorted((c for c in post.counterfactuals if abs(c.probability - post.probability) > 1e-6),
                   key=lambda c: -abs(c.probability - post.probability))
    return [{"do": dict(c.setting), "probability": round(c.probability, 6), "baseline": round(post.probability, 6),
             "kind": c.kind, "target": post.concept, "description": c.describe(bundle.names)} for c in moved]


def make_generator(settings: Any, kind: str | None = None, **overrides: Any) -> Generator:
    """The generator ``kind`` names (default ``settings.generation.kind``), built from settings;
    ``overrides`` (e.g. ``model_path``, ``extractor``, ``progress``) go to its ``from_settings``."""
    kind = kind or settings.generation.kind
    target = GENERATORS.get(kind)
    if target is None:
        raise InputError(f"unknown generator {kind!r}", fix=f"use one of {', '.join(GENERATORS)}")
    mod, cls = target.split(":")
    return getattr(importlib.import_module(mod), cls).from_settings(settings, **overrides)


def names_and_roles() -> tuple[Mapping[str, str], Mapping[str, str]]:
    from kgrag.ontology import concepts

    cs = concepts()
    return {c.id: c.name for c in cs.values()}, {c.id: c.role for c in cs.values()}


def parsed_concepts(bundle: EvidenceBundle) -> Sequence[str]:
    return bundle.question.concepts if bundle.question is not None else ()

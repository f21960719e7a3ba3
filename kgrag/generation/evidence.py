"""The evidence bundle: everything a generator may read, in one typed object.

Every generator (the offline grounded writer, a local transformers model, an
OpenAI-compatible server) and every prompt template reads only an
:class:`EvidenceBundle`.  It holds

- the query (id, question, findings text, image paths, modality);
- V_I: the image-level concept probabilities, and the subset used as observations;
- the reranked evidence, each item with every score the query computed (fused
  similarity and its parts, causal log-likelihood, final score, reward, PageRank) and
  its report sentences, each tagged with its section and the concepts it asserts;
- stage-2 definitions of the concepts the evidence mentions;
- the posterior P(c | V_I) of each concept, with its causal paths (explanations) and
  its counterfactuals;
- the graph and index versions the numbers came from.

A bundle round-trips through JSON (:meth:`EvidenceBundle.to_dict` /
:meth:`EvidenceBundle.from_dict`), which is what ``kgrag finetune`` hashes and what
tests build by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

#: counterfactual kinds: graph surgery + exact inference, or the evidence without one observation
DO = "do"
WITHOUT_EVIDENCE = "without_evidence"
COUNTERFACTUAL_KINDS = (DO, WITHOUT_EVIDENCE)
QUESTION_SCHEME = "question.v1"
INTENTS = ("closed", "findings", "diagnosis", "location", "severity", "unparsed")


@dataclass(frozen=True, slots=True)
class QueryInfo:
    id: str | None = None
    question: str | None = None
    findings: str | None = None
    images: tuple[str, ...] = ()
    modality: str = "radiology"


@dataclass(frozen=True, slots=True)
class ParsedQuestion:
    """What :class:`kgrag.generation.questions.QuestionParser` read in a question."""

    text: str
    intent: str  # one of INTENTS
    concepts: tuple[str, ...] = ()
    polarity: str = "present"  # closed questions: "yes" means present (or absent)
    scheme: str = QUESTION_SCHEME

    @property
    def concept(self) -> str | None:
        return self.concepts[0] if self.concepts else None

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "intent": self.intent, "concepts": list(self.concepts), "polarity": self.polarity,
                "scheme": self.scheme}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParsedQuestion:
        return cls(d["text"], d["intent"], tuple(d.get("concepts", ())), d.get("polarity", "present"), d.get("scheme", QUESTION_SCHEME))


@dataclass(frozen=True, slots=True)
class ConceptProbability:
    """One entry of V_I: a concept and the image model's (or the findings text's) probability."""

    concept: str
    probability: float


@dataclass(frozen=True, slots=True)
class Mentioned:
    """A concept a sentence asserts: ``present``, ``absent`` or ``uncertain``."""

    concept: str
    assertion: str


@dataclass(frozen=True, slots=True)
class EvidenceSentence:
    text: str
    section: str  # findings | impression | indication | comparison | other
    mentions: tuple[Mentioned, ...] = ()

    def assertion_of(self, concept: str) -> str | None:
        """This sentence's assertion about ``concept`` (present > uncertain > absent), or None."""
        rank = {"present": 2, "uncertain": 1, "absent": 0}
        found = [m.assertion for m in self.mentions if m.concept == concept]
        return max(found, key=lambda a: rank.get(a, -1)) if found else None


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    """One reranked study: its scores and its report sentences."""

    id: str
    rank: int
    score: float
    similarity: Mapping[str, float | None]  # image_text, image_image, text_text, fused
    causal_loglik: float | None = None
    reward: float | None = None
    pagerank: float | None = None
    sentences: tuple[EvidenceSentence, ...] = ()
    text: Mapping[str, str] = field(default_factory=dict)  # the study's report by section (findings, impression)

    @property
    def fused(self) -> float | None:
        return self.similarity.get("fused")

    def assertions(self) -> dict[str, str]:
        """Study-level assertion per concept over its sentences (present > uncertain > absent)."""
        rank = {"present": 2, "uncertain": 1, "absent": 0}
        out: dict[str, str] = {}
        for s in self.sentences:
            for m in s.mentions:
                if m.concept not in out or rank[m.assertion] > rank[out[m.concept]]:
                    out[m.concept] = m.assertion
        return out

    def section_text(self, *sections: str) -> str:
        """The report text of these sections: the stored section text when the bundle has it,
        else the joined sentences."""
        if self.text:
            return " ".join(self.text[x].strip() for x in (sections or tuple(self.text)) if self.text.get(x))
        return " ".join(s.text for s in self.sentences if not sections or s.section in sections)


@dataclass(frozen=True, slots=True)
class Path:
    nodes: tuple[str, ...]
    strength: float


@dataclass(frozen=True, slots=True)
class Counterfactual:
    """P(target) under an intervention (``kind="do"``: graph surgery, then exact inference)
    or with the named observations removed from the evidence (``kind="without_evidence"``).
    ``setting`` maps each changed concept to the value it is clamped to (0 = absent)."""

    setting: Mapping[str, int]
    probability: float
    kind: str = DO

    def describe(self, names: Mapping[str, str] | None = None) -> str:
        names = names or {}
        parts = [f"{names.get(c, c.replace('_', ' ')).lower()}" for c in self.setting]
        if self.kind == DO:
            inner = ", ".join(f"{p} = {'absent' if v == 0 else 'present'}" for p, v in zip(parts, self.setting.values(), strict=True))
            return f"do({inner})"
        return "without the evidence " + ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Posterior:
    concept: str
    probability: float
    paths: tuple[Path, ...] = ()
    counterfactuals: tuple[Counterfactual, ...] = ()


@dataclass(frozen=True, slots=True)
class Definition:
    concept: str
    name: str
    definition: str


@dataclass(frozen=True, slots=True)
class EvidenceBundle:
    query: QueryInfo
    image_findings: tuple[ConceptProbability, ...] = ()  # V_I, every concept the image model predicts
    observed: Mapping[str, float] = field(default_factory=dict)  # the part of V_I used as evidence
    evidence: tuple[EvidenceItem, ...] = ()
    posteriors: Mapping[str, Posterior] = field(default_factory=dict)
    definitions: tuple[Definition, ...] = ()
    graph_version: str | None = None
    index_version: str | None = None
    names: Mapping[str, str] = field(default_factory=dict)  # concept id -> display name
    roles: Mapping[str, str] = field(default_factory=dict)  # concept id -> ImageFinding | Finding | Diagnosis
    question: ParsedQuestion | None = None  # the parsed question (None: no question, a report is asked for)

    # -- lookups ---------------------------------------------------------------------
    def name(self, concept: str) -> str:
        return self.names.get(concept, concept.replace("_", " ")).lower()

    def role(self, concept: str) -> str | None:
        return self.roles.get(concept)

    def item(self, evidence_id: str) -> EvidenceItem | None:
        for e in self.evidence:
            if e.id == evidence_id:
                return e
        return None

    @property
    def evidence_ids(self) -> list[str]:
        return [e.id for e in self.evidence]

    def posterior(self, concept: str) -> float | None:
        p = self.posteriors.get(concept)
        return None if p is None else p.probability

    def image_probability(self, concept: str) -> float | None:
        for f in self.image_findings:
            if f.concept == concept:
                return f.probability
        return self.observed.get(concept)

    def relevance(self) -> list[float]:
        """r_k: each evidence item's fused relevance, min-max normalised over the bundle
        (MR-RAG).  All equal (or one item): 0 for all, i.e. no item is favoured."""
        return minmax([e.fused if e.fused is not None else e.score for e in self.evidence])

    def graph_has_opinion(self, concept: str) -> bool:
        """P(c | V_I) says something about this image: c is in V_I, or a causal path from an
        observed concept reaches it (otherwise the posterior is only c's leak)."""
        if concept not in self.posteriors or not (self.observed or self.image_findings):
            return False
        return self.image_probability(concept) is not None or bool(self.posteriors[concept].paths)

    def diagnoses(self, *, informed: bool = False) -> list[Posterior]:
        """Posteriors of Diagnosis-role concepts, most probable first (``no_finding`` excluded);
        ``informed``: only those the graph has an opinion about."""
        ds = [p for c, p in self.posteriors.items() if self.roles.get(c) == "Diagnosis" and c != "no_finding"
              and (not informed or self.graph_has_opinion(c))]
        return sorted(ds, key=lambda p: (-p.probability, p.concept))

    def without(self, evidence_ids: Iterable[str]) -> EvidenceBundle:
        """The same bundle with some evidence items dropped (ranks renumbered)."""
        drop = set(evidence_ids)
        kept = [e for e in self.evidence if e.id not in drop]
        return replace(self, evidence=tuple(replace(e, rank=i + 1) for i, e in enumerate(kept)))

    # -- JSON ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["query"]["images"] = list(self.query.images)
        d["observed"] = dict(self.observed)
        d["names"], d["roles"] = dict(self.names), dict(self.roles)
        d["posteriors"] = {c: _posterior_dict(p) for c, p in self.posteriors.items()}
        d["evidence"] = [_item_dict(e) for e in self.evidence]
        d["question"] = None if self.question is None else self.question.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvidenceBundle:
        q = d.get("query") or {}
        return cls(
            query=QueryInfo(q.get("id"), q.get("question"), q.get("findings"), tuple(q.get("images") or ()),
                            q.get("modality") or "radiology"),
            image_findings=tuple(ConceptProbability(f["concept"], float(f["probability"])) for f in d.get("image_findings", [])),
            observed={k: float(v) for k, v in (d.get("observed") or {}).items()},
            evidence=tuple(_item_from(e) for e in d.get("evidence", [])),
            posteriors={c: _posterior_from(c, p) for c, p in (d.get("posteriors") or {}).items()},
            definitions=tuple(Definition(x["concept"], x.get("name", x["concept"]), x.get("definition", ""))
                              for x in d.get("definitions", [])),
            graph_version=d.get("graph_version"),
            index_version=d.get("index_version"),
            names=dict(d.get("names") or {}),
            roles=dict(d.get("roles") or {}),
            question=ParsedQuestion.from_dict(d["question"]) if d.get("question") else None,
        )


def minmax(values: Sequence[float]) -> list[float]:
    """(x - min) / (max - min); all equal: zeros."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    if hi - lo <= 1e-12:
        return [0.0 for _ in values]
    return [(v - lo) / (hi - lo) for v in values]


def counterfactual_from(row: Mapping[str, Any]) -> Counterfactual:
    """A counterfactual from a graph-store row: ``{"do": {c: 0}, "probability": p}`` (an
    intervention) or ``{"remove": c, "probability": p}`` (``c`` dropped from the evidence)."""
    if "do" in row:
        return Counterfactual({str(k): int(v) for k, v in row["do"].items()}, float(row["probability"]), row.get("kind", DO))
    return Counterfactual({str(row["remove"]): 0}, float(row["probability"]), row.get("kind", WITHOUT_EVIDENCE))


def posteriors_from(probabilities: Mapping[str, float], paths: Mapping[str, Sequence[Any]] | None = None,
                    counterfactuals: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> dict[str, Posterior]:
    """Posteriors from the graph store's answers: ``probabilities`` {concept: P(c | V_I)},
    ``paths`` {concept: [CausalPath | {"nodes", "strength"}]}, ``counterfactuals``
    {concept: [{"do": {...}, "probability"} | {"remove": c, "probability"}]}."""
    paths, counterfactuals = paths or {}, counterfactuals or {}
    out = {}
    for c, p in probabilities.items():
        ps = tuple(Path(tuple(_get(x, "nodes")), float(_get(x, "strength"))) for x in paths.get(c, ()))
        cfs = tuple(counterfactual_from(x) for x in counterfactuals.get(c, ()))
        out[c] = Posterior(c, float(p), ps, cfs)
    return out


def _get(x: Any, name: str) -> Any:
    return x[name] if isinstance(x, Mapping) else getattr(x, name)


# -- report text -> section-tagged sentences ----------------------------------------------
_SENT_END = re.compile(r"(?<=[.!?])\s+(?=\S)|\n\s*\n")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (a period, ! or ? then whitespace, or a blank line)."""
    spans, start = [], 0
    for m in _SENT_END.finditer(text):
        if text[start:m.start()].strip():
            spans.append(_strip_span(text, start, m.start()))
        start = m.end()
    if text[start:].strip():
        spans.append(_strip_span(text, start, len(text)))
    return spans


def sentences_of(report: str, sections: Sequence[Any], mentions: Sequence[Any],
                 keep_sections: Sequence[str] = ("findings", "impression")) -> list[EvidenceSentence]:
    """The sentences of a stored report, in reading order, each with its section and the
    mentions whose span starts inside it.  ``sections`` carry ``name, start, end`` into
    ``report`` (:class:`kgrag.types.Section`); ``mentions`` carry ``concept, assertion,
    start`` (:class:`kgrag.types.Mention`).  Mention-free sentences are kept (they are
    report text too) with no mentions."""
    out: list[EvidenceSentence] = []
    secs = [s for s in sections if not keep_sections or s.name in keep_sections] or list(sections)
    for sec in secs:
        body = report[sec.start:sec.end]
        for a, b in split_sentences(body):
            lo, hi = sec.start + a, sec.start + b
            ms, seen = [], set()
            for m in mentions:
                key = (m.concept, m.assertion)
                if lo <= m.start < hi + 1 and key not in seen:
                    seen.add(key)
                    ms.append(Mentioned(m.concept, m.assertion))
            out.append(EvidenceSentence(_clean(report[lo:hi]), sec.name, tuple(ms)))
    return out


def _strip_span(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def _clean(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


# -- JSON helpers ------------------------------------------------------------------------
def _posterior_dict(p: Posterior) -> dict[str, Any]:
    return {"probability": p.probability,
            "paths": [{"nodes": list(x.nodes), "strength": x.strength} for x in p.paths],
            "counterfactuals": [{"do": dict(c.setting), "probability": c.probability, "kind": c.kind} for c in p.counterfactuals]}


def _posterior_from(concept: str, d: Mapping[str, Any]) -> Posterior:
    return Posterior(concept, float(d["probability"]),
                     tuple(Path(tuple(x["nodes"]), float(x["strength"])) for x in d.get("paths", [])),
                     tuple(counterfactual_from(c) for c in d.get("counterfactuals", [])))


def _item_dict(e: EvidenceItem) -> dict[str, Any]:
    return {"id": e.id, "rank": e.rank, "score": e.score, "similarity": dict(e.similarity), "causal_loglik": e.causal_loglik,
            "reward": e.reward, "pagerank": e.pagerank, "text": dict(e.text),
            "sentences": [{"text": s.text, "section": s.section,
                           "mentions": [{"concept": m.concept, "assertion": m.assertion} for m in s.mentions]}
                          for s in e.sentences]}


def _item_from(d: Mapping[str, Any]) -> EvidenceItem:
    sents = []
    for s in d.get("sentences", []):
        if isinstance(s, str):  # the query output contract carries plain strings
            sents.append(EvidenceSentence(s, "other"))
        else:
            sents.append(EvidenceSentence(s["text"], s.get("section", "other"),
                                          tuple(Mentioned(m["concept"], m["assertion"]) for m in s.get("mentions", []))))
    sim = dict(d.get("similarity") or {})
    return EvidenceItem(d["id"], int(d["rank"]), float(d["score"]), sim, d.get("causal_loglik"), d.get("reward"),
                        d.get("pagerank"), tuple(sents), dict(d.get("text") or {}))

"""Rule-based concept extraction: lexicon + medspaCy ConText assertion.

Assertion (``rules.v3``; docs/ingest.md lists the cues and the reasons):

- ``absent``: a negation cue in scope (``no``, ``without``, ``free of``,
  ``resolved``, ``has cleared``; lists such as "no X, Y, or Z"), or a lexicon
  phrase that states normality ("heart size is normal" → cardiomegaly absent).
- ``uncertain``: hedges and hypotheticals ("possible", "likely", "suggests",
  "may represent", "cannot exclude", "evaluate for", "rule out"), and historical
  mentions ("history of"): they say nothing certain about this study, so they are
  kept apart from present/absent.  "prior"/"old" are not historical cues (they
  describe findings still visible).
- ``present``: otherwise.

Only negation is overridden when a hedge is also in scope ("cannot exclude" is a
hedge, not a negation).  A lexicon row's ``also`` list emits further concepts for
the same span ("interstitial opacities" → interstitial_markings + lung_opacity).
"""

from __future__ import annotations

import json
import logging
import warnings
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol, runtime_checkable

from kgrag.ingest.sections import split_sections
from kgrag.ontology import concepts
from kgrag.types import Mention

log = logging.getLogger(__name__)

EXTRACTOR = "rules"
EXTRACTOR_VERSION = "rules.v3"

# ConText rules added to medspaCy's defaults (literal, category, direction[, max_scope]).
# "versus" is confined to 3 tokens each side: in "streaky opacity, atelectasis versus
# scarring" the opacity is certain, only its interpretation is hedged.
EXTRA_CONTEXT_RULES = [
    ("cannot exclude", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("can not exclude", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("cannot be excluded", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("cannot be ruled out", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("not excluded", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("is not excluded", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("may represent", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("could represent", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("may reflect", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("could reflect", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("question of", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("questionable", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("concerning for", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("suspicious for", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("versus", "POSSIBLE_EXISTENCE", "BIDIRECTIONAL", 3),
    ("vs", "POSSIBLE_EXISTENCE", "BIDIRECTIONAL", 3),
    ("suspected", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("may be secondary to", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("differential considerations include", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("differential diagnosis includes", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("could obscure", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("may obscure", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("rule-out", "HYPOTHETICAL", "FORWARD"),
    ("to exclude", "HYPOTHETICAL", "FORWARD"),
    ("in detecting", "HYPOTHETICAL", "FORWARD"),
    ("suggests", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("suggest", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("suggesting", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("suggestion of", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("possibly", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("presumably", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("favoring", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("favored as", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("could be", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("may be due to", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("maybe due to", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("difficult to exclude", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("difficult to completely exclude", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("would be a consideration", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("is suspected", "POSSIBLE_EXISTENCE", "BACKWARD"),
    ("correlate clinically for", "HYPOTHETICAL", "FORWARD"),
    ("have cleared", "NEGATED_EXISTENCE", "BACKWARD"),
    ("has cleared", "NEGATED_EXISTENCE", "BACKWARD"),
    ("evaluate for", "HYPOTHETICAL", "FORWARD"),
    ("evaluation for", "HYPOTHETICAL", "FORWARD"),
    ("assess for", "HYPOTHETICAL", "FORWARD"),
    ("rule out", "HYPOTHETICAL", "FORWARD"),
    ("r/o", "HYPOTHETICAL", "FORWARD"),
    ("resolution of", "NEGATED_EXISTENCE", "FORWARD"),
    ("has resolved", "NEGATED_EXISTENCE", "BACKWARD"),
    ("have resolved", "NEGATED_EXISTENCE", "BACKWARD"),
    ("resolved", "NEGATED_EXISTENCE", "BIDIRECTIONAL"),
    ("clear of", "NEGATED_EXISTENCE", "FORWARD"),
    ("negative for", "NEGATED_EXISTENCE", "FORWARD"),
    ("no evidence of", "NEGATED_EXISTENCE", "FORWARD"),
    ("no convincing", "NEGATED_EXISTENCE", "FORWARD"),
    ("no definite", "NEGATED_EXISTENCE", "FORWARD"),
    ("no focal", "NEGATED_EXISTENCE", "FORWARD"),
    ("to suggest", "POSSIBLE_EXISTENCE", "FORWARD"),
    ("clearing of", "NEGATED_EXISTENCE", "FORWARD"),
    # medspaCy reads ": no" backward only (the "Fever: no" form).  In reports the heading
    # usually names an organ: "Pleura: No effusion." negates what follows as well
    (": no", "NEGATED_EXISTENCE", "BIDIRECTIONAL"),
    (": none", "NEGATED_EXISTENCE", "BACKWARD"),
]
_UNCERTAIN = {"POSSIBLE_EXISTENCE", "HYPOTHETICAL", "HISTORICAL"}


@lru_cache(maxsize=1)
def lexicon() -> list[dict[str, Any]]:
    text = resources.files("kgrag.resources").joinpath("lexicon.jsonl").read_text("utf-8")
    rows = [json.loads(x) for x in text.splitlines() if x.strip()]
    known = concepts()
    bad = sorted({c for r in rows for c in [r["concept"], *r.get("also", [])]} - set(known))
    if bad:
        raise ValueError(f"lexicon.jsonl names unknown concepts {bad}")
    return rows


def _quiet_loguru() -> None:
    try:
        from loguru import logger

        logger.disable("PyRuSH")
    except ImportError:
        pass


def build_nlp():
    """A medspaCy pipeline: spaCy's rule sentencizer, lexicon target matcher, ConText.

    spaCy's punctuation sentencizer replaces medspaCy's PyRuSH: on IU-Xray PyRuSH
    took ~85% of extraction time (~25 reports/s) for the same sentence ends in
    these short, punctuated reports; ConText scopes stop at sentence ends either way."""
    from kgrag.deps import require

    _quiet_loguru()
    medspacy = require("medspacy")
    from medspacy.context import ConTextRule
    from medspacy.ner import TargetRule

    nlp = medspacy.load(medspacy_enable=["medspacy_target_matcher", "medspacy_context"])
    nlp.add_pipe("sentencizer", first=True)
    rules = []
    for r in lexicon():
        meta = {k: r[k] for k in ("assertion", "also") if r.get(k)} or None
        rules.append(TargetRule(r["phrase"], r["concept"], attributes=None, metadata=meta))
    nlp.get_pipe("medspacy_target_matcher").add(rules)
    # medspaCy's default rules, minus the literals kgrag redefines (its defaults read
    # "evaluate for" and "cannot exclude" as negation; in reports they are hedges)
    ours = {r[0].lower() for r in EXTRA_CONTEXT_RULES}
    defaults = [r for r in nlp.get_pipe("medspacy_context").rules if r.literal.lower() not in ours]
    nlp.remove_pipe("medspacy_context")
    ctx = nlp.add_pipe("medspacy_context", config={"rules": None})
    ctx.add(defaults + [ConTextRule(r[0], r[1], direction=r[2], max_scope=r[3] if len(r) > 3 else None)
                        for r in EXTRA_CONTEXT_RULES])
    return nlp


def assertion_of(ent) -> str:
    meta = getattr(ent._, "target_rule", None)
    forced = None
    if meta is not None and getattr(meta, "metadata", None):
        forced = meta.metadata.get("assertion")
    if forced:
        return forced
    cats = {m.category for m in ent._.modifiers}
    if cats & _UNCERTAIN:
        return "uncertain"
    if "NEGATED_EXISTENCE" in cats:
        return "absent"
    if "FAMILY" in cats:
        return "uncertain"
    return "present"


@runtime_checkable
class Extractor(Protocol):
    """What the ingest pipeline needs from a concept extractor (rules, LLM/VLM proposer)."""

    name: str
    version: str

    def warm_up(self) -> None: ...

    def extract(self, study_id: str, text: str) -> list[Mention]: ...

    def extract_many(self, items: list[tuple[str, str]]) -> list[list[Mention]]: ...


def make_extractor(settings: Any) -> Extractor:
    """The extractor ``settings.extractor.kind`` names: ``rules`` (offline default) or
    ``openai`` (an OpenAI-compatible server, :mod:`kgrag.ingest.llm_extractor`)."""
    if settings.extractor.kind == "openai":
        from kgrag.ingest.llm_extractor import LLMExtractor

        return LLMExtractor.from_settings(settings)
    return RuleExtractor()


class RuleExtractor:
    """Extract :class:`~kgrag.types.Mention` records from report texts."""

    name = EXTRACTOR
    version = EXTRACTOR_VERSION

    def __init__(self) -> None:
        self._nlp = None

    def warm_up(self) -> None:
        if self._nlp is None:
            self._nlp = build_nlp()

    def extract(self, study_id: str, text: str) -> list[Mention]:
        return self.extract_many([(study_id, text)])[0]

    def extract_many(self, items: list[tuple[str, str]], batch_size: int = 64) -> list[list[Mention]]:
        """Mentions per (study_id, full report text); offsets index the full text.

        Each section body is processed on its own, so headers never sit inside a
        ConText scope."""
        self.warm_up()
        roles = {c.id: c.role for c in concepts().values()}
        chunks: list[tuple[int, str, int, str]] = []  # (item index, section, offset, text)
        for i, (sid, text) in enumerate(items):
            for sec in split_sections(sid, text):
                lead = len(sec.text) - len(sec.text.lstrip())
                # ".." (common in de-identified reports) hides a sentence end from the
                # splitter; ". " keeps every offset unchanged
                body = sec.text.strip().replace("..", ". ")
                for start, piece in split_long(body):
                    chunks.append((i, sec.name, sec.start + lead + start, piece))
        out: list[list[Mention]] = [[] for _ in items]
        with warnings.catch_warnings():
            # medspaCy keeps an empty token Matcher beside its phrase patterns (spaCy W036)
            warnings.filterwarnings("ignore", message=r"\[W036\]")
            docs = list(self._nlp.pipe([c[3] for c in chunks], batch_size=batch_size))
        for (i, section, offset, _), doc in zip(chunks, docs, strict=True):
            sid = items[i][0]
            for ent in doc.ents:
                rule = getattr(ent._, "target_rule", None)
                also = (getattr(rule, "metadata", None) or {}).get("also", [])
                assertion = assertion_of(ent)
                for concept in [ent.label_, *also]:
                    out[i].append(
                        Mention(
                            study_id=sid,
                            concept=concept,
                            role=roles[concept],
                            assertion=assertion,
                            section=section,
                            sentence=ent.sent.text.strip(),
                            start=offset + ent.start_char,
                            end=offset + ent.end_char,
                            text=ent.text,
                            extractor=self.name,
                            extractor_version=self.version,
                        )
                    )
        return out


#: longest text handed to spaCy at once.  ConText compares every modifier with every
#: target of a doc (quadratic: one 1 MB report took minutes), and spaCy refuses texts
#: over nlp.max_length (E088, 1,000,000); scopes end at sentence ends, so cutting a long
#: section between sentences changes no assertion.
MAX_CHUNK_CHARS = 5_000


def split_long(text: str, limit: int = MAX_CHUNK_CHARS) -> list[tuple[int, str]]:
    """(offset, piece) of ``text`` cut into pieces of at most ``limit`` characters, after a
    sentence end (". ", "? ", "! " or a newline) where there is one, else at a space."""
    if not text.strip():
        return []
    out: list[tuple[int, str]] = []
    i, n = 0, len(text)
    while n - i > limit:
        window = text[i : i + limit]
        cut = max(window.rfind(". "), window.rfind("? "), window.rfind("! "), window.rfind("\n"))
        space = window.rfind(" ")
        cut = cut + 1 if cut > 0 else (space + 1 if space > 0 else limit)
        out.append((i, text[i : i + cut]))
        i += cut
    out.append((i, text[i:]))
    return [(o, t) for o, t in out if t.strip()]


def study_level(mentions: list[Mention]) -> dict[str, str]:
    """One assertion per concept: present > uncertain > absent."""
    rank = {"present": 2, "uncertain": 1, "absent": 0}
    out: dict[str, str] = {}
    for m in mentions:
        if m.concept not in out or rank[m.assertion] > rank[out[m.concept]]:
            out[m.concept] = m.assertion
    return out

"""Question parsing: a question's intent, the concepts it names and its polarity.

Concepts are found with the ingest extractor's lexicon (``resources/lexicon.jsonl``
through :class:`kgrag.ingest.extract.RuleExtractor`), run on the question and on its
declarative rewrites ("Is the heart enlarged?" is also read as "the heart is
enlarged", "Are the lungs clear?" as "the lungs are clear", which the lexicon states
as lung opacity absent), then on the catalogue's names and synonyms and a few lay
phrasings (:data:`QUESTION_SYNONYMS`) the report lexicon has no reason to hold.

Intents (``question.v1``):

- ``closed``: a yes/no question about a concept ("Is there X?", "Does the image show
  X?", "Any sign of X?", "Is X absent?", "Is there no X?", "Can X be excluded?").
  ``polarity`` is ``present`` when "yes" means the concept is there and ``absent``
  when "yes" means it is not (negated forms, "absent", "ruled out", "normal heart size");
- ``findings``: "What are the findings?", "Describe the image", "Write a report";
- ``diagnosis``: "What is the most likely diagnosis?";
- ``location``: "Where is the effusion?", "Which side is the pneumothorax on?";
- ``severity``: "How large is the effusion?", "How severe is the edema?";
- ``unparsed``: anything else; the writers answer it with the best-supported
  evidence sentences, labelled as such.
"""

from __future__ import annotations

import re
from typing import Any

from kgrag.generation.evidence import QUESTION_SCHEME as SCHEME
from kgrag.generation.evidence import ParsedQuestion
from kgrag.ontology import concepts

__all__ = ["SCHEME", "ParsedQuestion", "QuestionParser", "attribute_words", "laterality", "parse_question"]


#: lay and question-only phrasings -> concept (the report lexicon holds radiologists' phrasing)
QUESTION_SYNONYMS: dict[str, str] = {
    "collapsed lung": "pneumothorax",
    "air in the pleural space": "pneumothorax",
    "air around the lung": "pneumothorax",
    "fluid in the pleural space": "pleural_effusion",
    "fluid around the lung": "pleural_effusion",
    "fluid around the lungs": "pleural_effusion",
    "fluid in the chest": "pleural_effusion",
    "fluid in the lungs": "edema",
    "water on the lungs": "edema",
    "big heart": "cardiomegaly",
    "large heart": "cardiomegaly",
    "heart enlargement": "cardiomegaly",
    "enlarged cardiac": "cardiomegaly",
    "lung infection": "pneumonia",
    "chest infection": "pneumonia",
    "broken rib": "fracture",
    "broken bone": "fracture",
    "curved spine": "scoliosis",
    "spinal curvature": "scoliosis",
    "lines or tubes": "support_devices",
    "lines and tubes": "support_devices",
    "medical device": "support_devices",
    "medical devices": "support_devices",
    "lung nodule": "nodule",
    "overinflated lungs": "hyperinflation",
    "hyperinflated lungs": "hyperinflation",
    "normal chest x-ray": "no_finding",
    "normal x-ray": "no_finding",
    "normal study": "no_finding",
}
#: synonyms in the concept catalogue that are too generic to name a concept in a question
_AMBIGUOUS = {"line", "tube", "lesion", "collapse", "infection", "opacity", "opacities", "density"}

LATERALITY = ("right", "left", "bilateral", "bilaterally", "both")
REGION = ("upper", "middle", "lower", "lobe", "lobes", "base", "bases", "basal", "basilar", "bibasilar", "apex", "apices",
          "apical", "lingula", "lingular", "perihilar", "hilar", "retrocardiac", "costophrenic", "hemithorax",
          "lateral", "medial", "peripheral", "central", "subpleural", "zone", "zones", "posterior", "anterior")
SEVERITY = ("trace", "tiny", "small", "mild", "minimal", "moderate", "large", "severe", "massive", "extensive",
            "subtle", "marked", "dense", "patchy", "focal", "diffuse")

_ABSENCE_CUES = re.compile(
    r"\b(absent|excluded|ruled out|rule[sd]? out|resolved|cleared|gone|negative for|free of|clear of|without"
    r"|not (?:present|seen|visible|there|evident|identified|shown|depicted))\b")
_YES_NO_START = re.compile(r"^(is|are|was|were|does|do|did|can|could|has|have|had|should|would|will|any|no|without|"
                           r"evidence|signs?|presence)\b")
_LOCATION = re.compile(r"^where\b|\bwhich (side|lobe|lung|zone|part|region)\b|\bwhat (side|lobe|part|region|zone)\b|"
                       r"\blocation of\b|\blocated\b|\blaterality\b|\bis it (left|right)\b|\bleft or right\b|\bright or left\b")
_SEVERITY = re.compile(r"^how (large|big|severe|extensive|bad|much|serious|significant)\b|\bwhat size\b|"
                       r"\b(the )?size of\b|\bseverity\b|\bhow (large|big|severe|extensive)\b")
_DIAGNOSIS = re.compile(r"\bdiagnos(is|es|e)\b|\bwhat (disease|condition|illness)\b|\bdifferential\b|"
                        r"\bmost likely (cause|explanation|disease|condition)\b|\bwhat is wrong\b|\bunderlying (cause|disease)\b")
_FINDINGS = re.compile(
    r"\bwhat (are|were) the (\w+ )?findings\b|\b(describe|summari[sz]e|interpret|read)\b|"
    r"\bwhat (does|do|did) (the |this |these )?(image|images|film|radiograph|x-?ray|study|scan|chest(?: x-?ray)?)"
    r" (show|reveal|demonstrate)\b|\bwhat (abnormalit(?:y|ies)|is abnormal|is seen|can be seen|do you see|is visible)\b|"
    r"\b(write|generate|draft|give)( me)? (a |the )?(radiology |full )?report\b|\bany (abnormal|abnormality|abnormalities)\b|"
    r"\bfindings\b|\bwhat is (shown|seen|visible)\b|\bimpression\b")
_NORMAL = re.compile(r"^(is|are|does) (the |this )?(chest|x-?ray|image|radiograph|film|study|exam)?( x-?ray)? ?"
                     r"(normal|look normal|appear normal|unremarkable)$")
_ABNORMAL = re.compile(r"^(is|are) there (any )?(abnormalit(y|ies)|abnormal findings|(an )?abnormality)$|"
                       r"^(is|are) (the |this )?(chest|x-?ray|image|radiograph|film|study)( x-?ray)? abnormal$")
_DECLARE = re.compile(r"^(is|are|was|were) (.+)$")
_LOOK = re.compile(r"^(does|do) (.+?) (look|appear|seem) (.+)$")
_PUNCT = re.compile(r"[?!.,;:]+")


def normalize(question: str) -> str:
    q = question.strip().lower().replace("’", "'")
    q = re.sub(r"^(please|kindly|tell me|can you tell me|could you tell me)\b[, ]*", "", q)
    q = re.sub(r"^(in|on|from) (this|the) (image|x-?ray|radiograph|film|study)[, ]+", "", q)
    q = _PUNCT.sub(" ", q)
    return re.sub(r"\s+", " ", q).strip()


def rewrites(q: str) -> list[str]:
    """Declarative forms of a yes/no question, so lexicon phrases that hold a verb match:
    "are the lungs clear" -> "the lungs are clear", "does the heart look enlarged" ->
    "the heart is enlarged"."""
    out = []
    m = _DECLARE.match(q)
    if m:
        aux, words = m.group(1), m.group(2).split()
        aux = {"was": "is", "were": "are"}.get(aux, aux)
        for i in range(1, len(words)):
            out.append(" ".join([*words[:i], aux, *words[i:]]))
    m = _LOOK.match(q)
    if m:
        out.append(f"{m.group(2)} is {m.group(4)}")
        out.append(f"{m.group(2)} are {m.group(4)}")
    return out


def _synonym_table() -> list[tuple[str, str]]:
    rows: dict[str, str] = {}
    for c in concepts().values():
        for s in [c.name, *c.synonyms]:
            s = s.lower()
            if s not in _AMBIGUOUS and len(s) > 2:
                rows.setdefault(s, c.id)
    rows.update(QUESTION_SYNONYMS)
    return sorted(rows.items(), key=lambda kv: -len(kv[0]))


def _synonym_hits(q: str, taken: list[tuple[int, int]]) -> list[tuple[int, str]]:
    hits = []
    spans = list(taken)
    for phrase, cid in _synonym_table():
        for m in re.finditer(r"\b" + re.escape(phrase) + r"\b", q):
            if any(a < m.end() and m.start() < b for a, b in spans):
                continue
            spans.append((m.start(), m.end()))
            hits.append((m.start(), cid))
    return hits


class QuestionParser:
    """Parse questions with an extractor (``extract_many([(id, text)]) -> [[Mention]]``);
    the default is the rule extractor the ingest uses."""

    def __init__(self, extractor: Any | None = None) -> None:
        self._extractor = extractor

    @property
    def extractor(self) -> Any:
        if self._extractor is None:
            from kgrag.ingest.extract import RuleExtractor

            self._extractor = RuleExtractor()
        return self._extractor

    def concepts_in(self, q: str) -> tuple[list[str], dict[str, str]]:
        """Concepts named in the normalised question ``q`` in order of appearance, and
        the assertion the extractor gave each (from the first text that names it)."""
        texts = [q, *rewrites(q)]
        x = self.extractor
        items = [(f"q{i}", t) for i, t in enumerate(texts)]
        found = x.extract_many(items) if hasattr(x, "extract_many") else [x.extract(i, t) for i, t in items]
        order: list[tuple[int, str]] = []
        assertion: dict[str, str] = {}
        taken = []
        for i, ms in enumerate(found):
            for m in ms:
                if m.concept in assertion:
                    continue
                assertion[m.concept] = m.assertion
                # a rewrite moves words; place its concepts by where their span's first word sits in q
                pos = m.start if i == 0 else max(q.find((m.text or "").split()[0] if m.text else ""), 0)
                order.append((pos, m.concept))
                if i == 0:
                    taken.append((m.start, m.end))
        for pos, cid in _synonym_hits(q, taken):
            if cid not in assertion:
                assertion[cid] = "present"
                order.append((pos, cid))
        order.sort()
        return [c for _, c in order], assertion

    def parse(self, question: str | None) -> ParsedQuestion | None:
        if question is None or not question.strip():
            return None
        q = normalize(question)
        if _NORMAL.match(q):
            return ParsedQuestion(question, "closed", ("no_finding",), "present")
        if _ABNORMAL.match(q):
            return ParsedQuestion(question, "closed", ("no_finding",), "absent")
        cs, assertion = self.concepts_in(q)
        if cs and _LOCATION.search(q):
            return ParsedQuestion(question, "location", tuple(cs))
        if cs and _SEVERITY.search(q):
            return ParsedQuestion(question, "severity", tuple(cs))
        if _DIAGNOSIS.search(q) and (not cs or q.startswith(("what", "which"))):
            return ParsedQuestion(question, "diagnosis", tuple(cs))
        if cs and not (q.startswith(("what", "which", "describe")) and _FINDINGS.search(q)):
            absent = assertion[cs[0]] == "absent" or bool(_ABSENCE_CUES.search(q))
            return ParsedQuestion(question, "closed", tuple(cs), "absent" if absent else "present")
        if _FINDINGS.search(q):
            return ParsedQuestion(question, "findings", tuple(cs))
        return ParsedQuestion(question, "unparsed", tuple(cs))


def attribute_words(sentence: str, kind: str) -> str | None:
    """The location ("right lower lobe", "left base", "bilateral") or severity ("small",
    "moderate") words of a sentence: the longest run of such words, or None."""
    words = re.findall(r"[a-z]+", sentence.lower())
    vocab = set(LATERALITY) | set(REGION) if kind == "location" else set(SEVERITY)
    best: list[str] = []
    run: list[str] = []
    for w in [*words, ""]:
        if w in vocab:
            run.append(w)
            continue
        if run and len(run) > len(best) and (kind != "location" or any(x in LATERALITY or x not in ("lobe", "lobes", "zone", "zones") for x in run)):
            best = run
        run = []
    return " ".join(best) or None


def laterality(words: str | None) -> str | None:
    if not words:
        return None
    ws = words.split()
    if "bilateral" in ws or "bilaterally" in ws or "both" in ws or "bibasilar" in ws or ("right" in ws and "left" in ws):
        return "bilateral"
    for side in ("right", "left"):
        if side in ws:
            return side
    return None


def parse_question(question: str | None, extractor: Any | None = None) -> ParsedQuestion | None:
    return QuestionParser(extractor).parse(question)


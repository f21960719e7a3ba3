"""The offline grounded writer (the default generator, ``grounded.v2``).

It writes only what the evidence bundle supports and cites every sentence: an
evidence sentence carries ``[<study id>]``, a statement from the image model
``[V_I]``.  Nothing needs weights; the LM generators are compared with it.

**Beliefs.**  For a concept ``c``::

    p_causal = P(c | V_I)                when the graph has an opinion: c is in V_I, or a
                                         causal path reaches c from an observed concept
    vote     = (n_present + 0.5) / (n_present + n_absent + 1)
               over the evidence reports; a report that does not mention c counts as
               absent (reports state what they see); Jeffreys-smoothed
    p        = w * p_causal + (1 - w) * vote          (w = causal_weight, default 0.7)

with ``p = p_causal`` or ``p = vote`` when only one exists.  A closed question's
``P(yes)`` is ``p`` ("is there X?") or ``1 - p`` ("is X absent?"); it is monotone in
the posterior and is the probability ``kgrag eval`` scores (AUC).

**Reports** are built from the evidence sentences:

- every concept that an evidence sentence states (present or absent) or that V_I
  reports gets a decision: present when ``p_causal >= 0.5`` (the posterior decides),
  else by the evidence's explicit claims, else by V_I;
- one sentence per concept, preferring the best-ranked sentence that agrees with
  every decision it touches (a sentence that contradicts a decision, or hedges, is
  never used); present concepts first, then at most ``max_negatives`` sentences of
  negatives the top three evidence items state; a sentence covering several concepts
  counts once; without a posterior a concept is present when the evidence vote is;
- when evidence items disagree on a concept the report writes about, and the posterior
  decided it (or the top evidence itself disagrees), a note says which items and what
  decided (at most ``max_notes``);
- a concept with no agreeing evidence sentence is written from V_I (``[V_I]``), or
  for a diagnosis from the posterior and its path, when they support it; otherwise
  it is left out: no sentence is about a concept neither the evidence nor V_I supports;
- findings first (sentences from FINDINGS sections and non-diagnosis concepts), then
  the impression.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kgrag.generation.base import (
    CLOSED_VQA,
    DIAGNOSIS,
    IMAGE_CITE,
    OPEN_VQA,
    REPORT,
    Answer,
    check_task,
    explanation,
)
from kgrag.generation.evidence import EvidenceBundle, EvidenceItem, EvidenceSentence
from kgrag.generation.questions import attribute_words, laterality

SCHEME = "grounded.v2"
_NOT_FINDINGS = {"no_finding", "support_devices"}  # concepts that do not make a study abnormal


# -- beliefs ---------------------------------------------------------------------------------
@dataclass(slots=True)
class Belief:
    concept: str
    p: float | None  # the answer probability that c is present
    p_causal: float | None  # P(c | V_I) when the graph has an opinion
    p_image: float | None  # c's V_I probability, when the image model predicts c
    vote: float | None
    present: list[str] = field(default_factory=list)  # evidence ids stating c present
    absent: list[str] = field(default_factory=list)  # evidence ids stating c absent
    unmentioned: list[str] = field(default_factory=list)  # evidence ids saying nothing of c

    @property
    def disputed(self) -> bool:
        return bool(self.present) and bool(self.absent)


def evidence_vote(n_present: int, n_absent: int) -> float | None:
    if n_present + n_absent == 0:
        return None
    return (n_present + 0.5) / (n_present + n_absent + 1.0)


def combine(p_causal: float | None, vote: float | None, causal_weight: float = 0.7) -> float | None:
    if p_causal is None and vote is None:
        return None
    if p_causal is None:
        return vote
    if vote is None:
        return p_causal
    return causal_weight * p_causal + (1.0 - causal_weight) * vote


def belief(bundle: EvidenceBundle, concept: str, causal_weight: float = 0.7) -> Belief:
    p_causal = bundle.posterior(concept) if bundle.graph_has_opinion(concept) else None
    pres, absn, unm = [], [], []
    for e in bundle.evidence:
        a = e.assertions().get(concept)
        if a == "present":
            pres.append(e.id)
        elif a == "absent":
            absn.append(e.id)
        elif a is None and e.sentences:
            unm.append(e.id)
    vote = evidence_vote(len(pres), len(absn) + len(unm))
    return Belief(concept, combine(p_causal, vote, causal_weight), p_causal, bundle.image_probability(concept), vote,
                  pres, absn, unm)


def p_yes(p_present: float, polarity: str) -> float:
    """P(answer = yes) for a closed question of that polarity."""
    return p_present if polarity == "present" else 1.0 - p_present


# -- sentences --------------------------------------------------------------------------------
def cite(sentence: str, *ids: str) -> str:
    """``sentence`` with ``[id]`` markers before its final punctuation."""
    s = sentence.strip()
    marks = " ".join(f"[{i}]" for i in ids)
    if s and s[-1] in ".!?":
        return f"{s[:-1]} {marks}{s[-1]}"
    return f"{s} {marks}."


def _fmt(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.2f}"


@dataclass(slots=True)
class _Written:
    text: str
    section: str
    source: str  # evidence | image | graph | note
    concepts: list[str]
    evidence_id: str | None = None
    rank: int | None = None
    source_text: str | None = None
    cites: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {"text": self.text, "section": self.section, "source": self.source, "concepts": self.concepts,
                "evidence_id": self.evidence_id, "rank": self.rank, "source_text": self.source_text, "cites": self.cites}


class GroundedGenerator:
    """The offline writer: reports, closed and open VQA, diagnosis, from the bundle alone."""

    name = "grounded"
    model = None
    prompt_version = SCHEME

    def __init__(self, *, causal_weight: float = 0.7, max_negatives: int = 4, negatives_from_top: int = 3,
                 max_notes: int = 3) -> None:
        self.causal_weight, self.max_negatives, self.negatives_from_top = causal_weight, max_negatives, negatives_from_top
        self.max_notes = max_notes

    @classmethod
    def from_settings(cls, settings: Any, **_: Any) -> GroundedGenerator:
        return cls(causal_weight=settings.generation.causal_weight)

    def warm_up(self) -> None:
        pass

    def close(self) -> None:
        pass

    @property
    def info(self) -> dict[str, Any]:
        return {"name": self.name, "model": None, "prompt_version": SCHEME}

    # -------------------------------------------------------------------------------------
    def generate(self, bundle: EvidenceBundle, task: str | None = None) -> Answer:
        task = check_task(task, bundle)
        q = bundle.question
        if task == REPORT:
            out = self.report(bundle)
        elif task == DIAGNOSIS:
            out = self.diagnosis(bundle)
        elif task == CLOSED_VQA and q is not None and q.concept is not None:
            out = self.closed(bundle)
        elif q is not None and q.intent in ("location", "severity") and q.concept is not None:
            out = self.attribute(bundle, q.intent)
        elif q is not None and q.intent == "findings":
            out = self.report(bundle, sections=("findings",))
            out.task = OPEN_VQA
        else:
            out = self.unparsed(bundle)
        out.generator = self.info
        if q is not None:
            out.intent, out.polarity = q.intent, (q.polarity if q.intent == "closed" else None)
        return out

    # -- decisions -------------------------------------------------------------------------
    def _decisions(self, bundle: EvidenceBundle) -> tuple[dict[str, bool], dict[str, Belief], list[str]]:
        """Decision per concept the evidence or V_I names, the beliefs, and the concepts in evidence order."""
        order: list[str] = []
        for e in bundle.evidence:
            for s in e.sentences:
                for m in s.mentions:
                    if m.assertion in ("present", "absent") and m.concept not in order:
                        order.append(m.concept)
        for f in bundle.image_findings:
            if f.concept not in order:
                order.append(f.concept)
        beliefs = {c: belief(bundle, c, self.causal_weight) for c in order}
        dec: dict[str, bool] = {}
        for c in order:
            b = beliefs[c]
            if c == "no_finding":
                continue
            if b.p_causal is not None:
                dec[c] = b.p_causal >= 0.5
            elif (b.present or b.absent) and b.vote is not None:
                dec[c] = b.vote >= 0.5  # reports that do not mention c count against it
            elif b.p_image is not None:
                dec[c] = b.p_image >= 0.5
        dec["no_finding"] = not any(v for c, v in dec.items() if c not in _NOT_FINDINGS)
        return dec, beliefs, order

    @staticmethod
    def _noteworthy(b: Belief, top_ids: set[str]) -> bool:
        """A dispute the report says it resolved: evidence items disagree, and the posterior
        decided it or the disagreement reaches the top evidence."""
        if not b.disputed:
            return False
        return b.p_causal is not None or (bool(set(b.present) & top_ids) and bool(set(b.absent) & top_ids))

    @staticmethod
    def _agrees(s: EvidenceSentence, dec: Mapping[str, bool]) -> bool:
        for m in s.mentions:
            if m.assertion == "uncertain":
                return False
            want = dec.get(m.concept)
            if want is None or want != (m.assertion == "present"):
                return False
        return bool(s.mentions)

    def _pick(self, bundle: EvidenceBundle, concept: str, want: bool, dec: Mapping[str, bool],
              covered: set[str], used: set[str]) -> tuple[EvidenceItem, EvidenceSentence] | None:
        best, best_key = None, None
        for e in bundle.evidence:
            for j, s in enumerate(e.sentences):
                if s.text in used or s.assertion_of(concept) != ("present" if want else "absent") or not self._agrees(s, dec):
                    continue
                gain = len({m.concept for m in s.mentions} - covered)
                key = (-gain, e.rank, j)
                if best_key is None or key < best_key:
                    best, best_key = (e, s), key
        return best

    def _section(self, bundle: EvidenceBundle, s_section: str | None, concepts: Sequence[str]) -> str:
        if s_section in ("findings", "impression"):
            return s_section
        return "impression" if any(bundle.role(c) == "Diagnosis" for c in concepts) else "findings"

    def _note(self, bundle: EvidenceBundle, b: Belief, decided: bool, section: str) -> _Written:
        name = bundle.name(b.concept)
        pres, absn = b.present[:3], b.absent[:3]
        by = (f"the posterior P({name} | V_I) = {b.p_causal:.2f} decides {'present' if decided else 'absent'}"
              if b.p_causal is not None else
              f"the evidence majority decides {'present' if decided else 'absent'}")
        text = (f"Evidence disagrees on {name}: {' '.join(f'[{i}]' for i in pres)} "
                f"{'states' if len(pres) == 1 else 'state'} it, {' '.join(f'[{i}]' for i in absn)} "
                f"{'denies' if len(absn) == 1 else 'deny'} it; {by}.")
        return _Written(text, section, "note", [b.concept], cites=[*pres, *absn])

    def _fallback(self, bundle: EvidenceBundle, c: str, want: bool, b: Belief) -> _Written | None:
        name = bundle.name(c)
        if b.p_image is not None and (b.p_image >= 0.5) == want:
            verb = "shows" if want else "does not show"
            text = f"The image model {verb} {name} (q = {b.p_image:.2f}) [{IMAGE_CITE}]."
            return _Written(text, self._section(bundle, None, [c]), "image", [c], cites=[])
        post = bundle.posteriors.get(c)
        if want and post is not None and post.paths and b.p_causal is not None and b.p_causal >= 0.5:
            path = post.paths[0]
            via = " → ".join(bundle.name(n) for n in path.nodes)
            text = (f"{name.capitalize()} is likely (P = {b.p_causal:.2f} given the image findings, "
                    f"via {via}, strength {path.strength:.2f}) [{IMAGE_CITE}].")
            return _Written(text, self._section(bundle, None, [c]), "graph", [c], cites=[])
        return None

    def _compose(self, bundle: EvidenceBundle, *, sections: Sequence[str] = ("findings", "impression"),
                 ) -> tuple[list[_Written], dict[str, bool], dict[str, Belief]]:
        dec, beliefs, order = self._decisions(bundle)
        top_ids = {e.id for e in bundle.evidence[: self.negatives_from_top]}
        present = [c for c in order if dec.get(c) and c != "no_finding"]
        present.sort(key=lambda c: -(beliefs[c].p_causal if beliefs[c].p_causal is not None else (beliefs[c].p or 0.0)))
        negatives = [c for c in order if dec.get(c) is False and set(beliefs[c].absent) & top_ids]
        negatives.sort(key=lambda c: (0 if self._noteworthy(beliefs[c], top_ids) else 1, -len(beliefs[c].absent), order.index(c)))
        needed: list[tuple[str, bool]] = [(c, True) for c in present]
        if dec.get("no_finding") and beliefs.get("no_finding") and beliefs["no_finding"].present:
            needed.append(("no_finding", True))
        covered: set[str] = set()
        used: set[str] = set()
        out: list[_Written] = []
        n_neg = n_notes = 0
        for c, want in needed + [(c, False) for c in negatives]:
            if c in covered:
                continue
            b = beliefs[c]
            if not want and n_neg >= self.max_negatives:
                continue
            hit = self._pick(bundle, c, want, dec, covered, used)
            w: _Written | None
            if hit is not None:
                e, s = hit
                cs = [m.concept for m in s.mentions]
                w = _Written(cite(s.text, e.id), self._section(bundle, s.section, cs), "evidence", cs, e.id, e.rank, s.text,
                             [e.id])
                used.add(s.text)
                covered.update(cs)
            else:
                w = self._fallback(bundle, c, want, b)
                covered.add(c)
            if w is not None:
                out.append(w)
                n_neg += 0 if want else 1
            if self._noteworthy(b, top_ids) and n_notes < self.max_notes:
                out.append(self._note(bundle, b, want, w.section if w else self._section(bundle, None, [c])))
                n_notes += 1
        # what V_I sees that no evidence sentence states
        for f in bundle.image_findings:
            c = f.concept
            if c not in covered and dec.get(c) and f.probability >= 0.5:
                w = self._fallback(bundle, c, True, beliefs[c])
                if w is not None:
                    out.append(w)
                    covered.add(c)
        out = [w for w in out if w.section in sections]
        order_key = {"findings": 0, "impression": 1}
        out.sort(key=lambda w: order_key.get(w.section, 2))  # stable: within a section, present before negatives
        return out, dec, beliefs

    # -- tasks -------------------------------------------------------------------------------
    def report(self, bundle: EvidenceBundle, *, sections: Sequence[str] = ("findings", "impression")) -> Answer:
        written, dec, beliefs = self._compose(bundle, sections=sections)
        if "impression" in sections and not any(w.section == "impression" for w in written):
            abnormal = [c for c, v in dec.items() if v and c not in _NOT_FINDINGS]
            if not abnormal and (bundle.observed or bundle.image_findings):
                written.append(_Written(f"No acute abnormality is supported by the image findings or the causal graph [{IMAGE_CITE}].",
                                        "impression", "image", []))
        parts = []
        for sec in sections:
            body = " ".join(w.text for w in written if w.section == sec)
            if body:
                parts.append(f"{sec.upper()}: {body}")
        text = " ".join(parts) or "No evidence sentence or image finding supports a report."
        cites = list(dict.fromkeys(i for w in written for i in w.cites))
        likely = [p.concept for p in bundle.diagnoses(informed=True) if dec.get(p.concept)]
        paths, cfs = [], []
        for d in likely[:3]:
            ps, cs = explanation(bundle, d)
            paths += ps
            cfs += cs
        return Answer(text, task=REPORT, citations=cites, paths=paths, counterfactuals=cfs,
                      sentences=[w.record() for w in written], scheme=SCHEME)

    def closed(self, bundle: EvidenceBundle) -> Answer:
        q = bundle.question
        assert q is not None and q.concept is not None
        c, pol = q.concept, q.polarity
        b = belief(bundle, c, self.causal_weight)
        name = bundle.name(c)
        paths, cfs = explanation(bundle, c)
        if b.p is None:
            return Answer(f"Neither the image model, the causal graph nor the evidence says anything about {name}; no answer.",
                          task=CLOSED_VQA, concept=c, scheme=SCHEME, paths=paths, counterfactuals=cfs)
        py = p_yes(b.p, pol)
        yes = py >= 0.5
        present = b.p >= 0.5
        lead = f"{'Yes' if yes else 'No'}: {name} is {'likely present' if present else 'unlikely'} (P(yes) = {py:.2f})."
        parts = [lead]
        written: list[_Written] = [_Written(lead, "answer", "graph" if b.p_causal is not None else "evidence", [c])]
        if b.p_image is not None:
            parts.append(f"Image model: q = {b.p_image:.2f} [{IMAGE_CITE}].")
        if b.p_causal is not None:
            parts.append(f"Causal posterior P({name} | V_I) = {b.p_causal:.2f}.")
        n = len(b.present) + len(b.absent)
        if n:
            parts.append(f"{len(b.present)} of {n} retrieved reports that state it {'say' if len(b.present) != 1 else 'says'} present"
                         + (f"; {len(b.unmentioned)} do not mention it." if b.unmentioned else "."))
        cites: list[str] = []
        for want, label in ((present, "Supporting"), (not present, "Against")):
            hit = self._quote(bundle, c, want)
            if hit is not None:
                e, s = hit
                parts.append(f'{label}: "{cite(s.text, e.id)}"')
                written.append(_Written(cite(s.text, e.id), "answer", "evidence", [m.concept for m in s.mentions], e.id, e.rank,
                                        s.text, [e.id]))
                cites.append(e.id)
        if paths:
            parts.append("Paths: " + "; ".join(" → ".join(bundle.name(x) for x in p["nodes"]) + f" ({p['strength']:.2f})"
                                                for p in paths) + ".")
        for cf in _shown(cfs):
            parts.append(f"{cf['description']} → P({bundle.name(cf['target'])}) = {cf['probability']:.2f}"
                         f" (now {cf['baseline']:.2f}).")
        for other in q.concepts[1:]:
            ob = belief(bundle, other, self.causal_weight)
            if ob.p is not None:
                parts.append(f"Also asked: {bundle.name(other)}, P = {ob.p:.2f}.")
        return Answer(" ".join(parts), "yes" if yes else "no", py, b.p_causal, CLOSED_VQA, concept=c, citations=cites,
                      paths=paths, counterfactuals=cfs, sentences=[w.record() for w in written], scheme=SCHEME)

    def _quote(self, bundle: EvidenceBundle, c: str, present: bool) -> tuple[EvidenceItem, EvidenceSentence] | None:
        want = "present" if present else "absent"
        for e in bundle.evidence:
            for s in e.sentences:
                if s.assertion_of(c) == want:
                    return e, s
        return None

    def diagnosis(self, bundle: EvidenceBundle) -> Answer:
        ds = bundle.diagnoses(informed=True)
        if ds:
            ranked = [(d.concept, d.probability, "posterior") for d in ds]
        else:  # no V_I: the evidence vote over the diagnoses the evidence states
            cs = {m.concept for e in bundle.evidence for s in e.sentences for m in s.mentions if bundle.role(m.concept) == "Diagnosis"}
            cs.discard("no_finding")
            ranked = sorted(((c, belief(bundle, c, self.causal_weight).vote or 0.0, "evidence vote") for c in cs),
                            key=lambda x: (-x[1], x[0]))
        if not ranked:
            return Answer("Neither the causal graph nor the evidence names a diagnosis.", task=DIAGNOSIS, scheme=SCHEME)
        c, p, how = ranked[0]
        name = bundle.name(c)
        paths, cfs = explanation(bundle, c)
        given = "given the image findings" if how == "posterior" else "by the evidence vote"
        if p >= 0.5:
            parts = [f"Most likely diagnosis: {name} (P = {p:.2f} {given})."]
        else:
            parts = [f"No diagnosis is likely; the most probable is {name} (P = {p:.2f} {given})."]
        if paths:
            parts.append("Paths: " + "; ".join(" → ".join(bundle.name(x) for x in pp["nodes"]) + f" ({pp['strength']:.2f})"
                                                for pp in paths) + ".")
        for cf in _shown(cfs):
            parts.append(f"{cf['description']} → P({bundle.name(cf['target'])}) = {cf['probability']:.2f}"
                         f" (now {cf['baseline']:.2f}).")
        cites: list[str] = []
        hit = self._quote(bundle, c, p >= 0.5)
        if hit is not None:
            e, s = hit
            parts.append(f'Evidence: "{cite(s.text, e.id)}"')
            cites.append(e.id)
        if len(ranked) > 1:
            parts.append("Next: " + ", ".join(f"{bundle.name(x)} ({px:.2f})" for x, px, _ in ranked[1:4]) + ".")
        return Answer(" ".join(parts), None, p, p if how == "posterior" else None, DIAGNOSIS, concept=c, citations=cites,
                      paths=paths, counterfactuals=cfs, scheme=SCHEME)

    def attribute(self, bundle: EvidenceBundle, kind: str) -> Answer:
        """Where ("location") or how large/severe ("severity") a concept is, from the words of
        the evidence sentences that state it present; each report votes once, weighted 1/rank."""
        q = bundle.question
        assert q is not None and q.concept is not None
        c = q.concept
        name = bundle.name(c)
        b = belief(bundle, c, self.causal_weight)
        votes: dict[str, float] = {}
        support: dict[str, list[str]] = {}
        for e in bundle.evidence:
            for s in e.sentences:
                if s.assertion_of(c) != "present":
                    continue
                words = attribute_words(s.text, kind)
                key = laterality(words) if kind == "location" else words
                key = key or words
                if key:
                    votes[key] = votes.get(key, 0.0) + 1.0 / e.rank
                    support.setdefault(key, []).append(e.id)
                    break
        paths, cfs = explanation(bundle, c)
        what = "location" if kind == "location" else "size or severity"
        parts: list[str] = []
        if b.p is not None and b.p < 0.5:
            parts.append(f"{name.capitalize()} is unlikely here (P = {b.p:.2f}), so it has no {what} to give.")
        elif b.p is not None:
            parts.append(f"{name.capitalize()} is likely (P = {b.p:.2f}).")
        cites: list[str] = []
        if votes:
            ranked = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))
            best, _ = ranked[0]
            ids = support[best][:3]
            cites += ids
            n_all = sum(len(v) for v in support.values())
            lead = ("Where retrieved reports state it" if b.p is not None and b.p < 0.5 else
                    f"Its {what} in the retrieved reports")
            parts.append(f"{lead}: {best} ({len(support[best])} of {n_all} reports that give a {what}) "
                         + " ".join(f"[{i}]" for i in ids) + ".")
            if len(ranked) > 1:
                parts.append("Also: " + ", ".join(f"{k} ({len(support[k])})" for k, _ in ranked[1:3]) + ".")
        else:
            parts.append(f"No retrieved report states the {what} of {name}.")
        return Answer(" ".join(parts), None, b.p, b.p_causal, OPEN_VQA, concept=c, citations=cites, paths=paths,
                      counterfactuals=cfs, scheme=SCHEME)

    def unparsed(self, bundle: EvidenceBundle, n: int = 3) -> Answer:
        written, _, _ = self._compose(bundle)
        written = [w for w in written if w.source != "note"][:n]
        body = " ".join(w.text for w in written) or "No evidence sentence is supported."
        text = f"The question was not understood (no known concept or intent); the best-supported evidence sentences: {body}"
        cites = list(dict.fromkeys(i for w in written for i in w.cites))
        return Answer(text, task=OPEN_VQA, citations=cites, sentences=[w.record() for w in written], scheme=SCHEME,
                      label="unparsed")


# -- grounded.v1 (kept until the query pipeline calls the generator) ---------------------------
@dataclass(slots=True)
class ConceptEvidence:
    present: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)


def answer_question(concept: str, *, p_causal: float | None, evidence: ConceptEvidence, paths: Sequence[Mapping[str, Any]] = (),
                    names: Mapping[str, str] | None = None, causal_weight: float = 0.7) -> dict[str, Any]:
    names = names or {}
    p = combine(p_causal, evidence_vote(len(evidence.present), len(evidence.absent)), causal_weight)
    label = names.get(concept, concept.replace("_", " ")).lower()
    if p is None:
        return {"text": f"The graph and the retrieved evidence say nothing about {label}; no answer.", "yes_no": None,
                "probability": None, "concept": concept, "scheme": "grounded.v1", "citations": [], "paths": []}
    yes = p >= 0.5
    cites = (evidence.present if yes else evidence.absent)[:3]
    return {"text": f"{'Yes' if yes else 'No'}: {label} is {'likely present' if yes else 'unlikely'} (p = {p:.2f}).",
            "yes_no": "yes" if yes else "no", "probability": round(float(p), 6), "concept": concept, "scheme": "grounded.v1",
            "citations": list(cites), "paths": [dict(x) for x in paths[:3]]}


def write_report(image_findings: Sequence[Mapping[str, Any]], diagnoses: Sequence[Mapping[str, Any]], *,
                 evidence_ids: Sequence[str] = (), names: Mapping[str, str] | None = None, threshold: float = 0.5) -> dict[str, Any]:
    names = names or {}
    seen = [f for f in image_findings if f["probability"] >= threshold]
    text = "FINDINGS: " + (", ".join(names.get(f["concept"], f["concept"]) for f in seen) or "none") + "."
    return {"text": text, "yes_no": None, "probability": None, "scheme": "grounded.v1", "citations": list(evidence_ids[:3])}


#: a counterfactual is written into the text only when it moves its target by this much
#: (two decimals show); the answer object lists every one
SHOWN_CHANGE = 0.005


def _shown(cfs: list[dict]) -> list[dict]:
    return [cf for cf in cfs if abs(cf["probability"] - cf["baseline"]) >= SHOWN_CHANGE][:3]

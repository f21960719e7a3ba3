"""A deterministic, grounded answer writer (the offline default generator).

It writes only what the retrieved evidence and the causal graph support, and
cites both: every sentence names the evidence studies and the causal paths it
rests on.  A VLM generator (loaded from a local path) can replace it; this one
needs no weights and is the reference the others are compared with.

Answer probability for a yes/no question about concept ``c`` (``grounded.v1``)::

    p_causal   = P(c | V_I) from the causal graph (noisy-OR over accepted paths)
    vote       = (n_present + 0.5) / (n_present + n_absent + 1)   over the top-K evidence
                 reports that state c (present) or deny it (absent); Jeffreys-smoothed
    p          = w * p_causal + (1 - w) * vote      (w = causal_weight, default 0.7)
    yes_no     = "yes" if p >= 0.5 else "no"

When the graph has no opinion (c unknown to it), p_causal is omitted and p = vote;
when no evidence states c either, the answer is ``null`` and the text says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SCHEME = "grounded.v1"


@dataclass(slots=True)
class ConceptEvidence:
    present: list[str] = field(default_factory=list)  # evidence ids stating the concept
    absent: list[str] = field(default_factory=list)  # evidence ids denying it


def evidence_vote(ev: ConceptEvidence) -> float | None:
    n_p, n_a = len(ev.present), len(ev.absent)
    if n_p + n_a == 0:
        return None
    return (n_p + 0.5) / (n_p + n_a + 1.0)


def combine(p_causal: float | None, vote: float | None, causal_weight: float = 0.7) -> float | None:
    if p_causal is None and vote is None:
        return None
    if p_causal is None:
        return vote
    if vote is None:
        return p_causal
    return causal_weight * p_causal + (1.0 - causal_weight) * vote


def _name(concept: str, names: Mapping[str, str]) -> str:
    return names.get(concept, concept.replace("_", " ")).lower()


def _path_text(path: Mapping[str, Any], names: Mapping[str, str]) -> str:
    return " → ".join(_name(n, names) for n in path["nodes"]) + f" (strength {path['strength']:.2f})"


def answer_question(
    concept: str,
    *,
    p_causal: float | None,
    evidence: ConceptEvidence,
    paths: Sequence[Mapping[str, Any]] = (),
    names: Mapping[str, str] | None = None,
    causal_weight: float = 0.7,
) -> dict[str, Any]:
    """Yes/no answer about one concept, with its grounds."""
    names = names or {}
    vote = evidence_vote(evidence)
    p = combine(p_causal, vote, causal_weight)
    label = _name(concept, names)
    if p is None:
        return {
            "text": f"The graph and the retrieved evidence say nothing about {label}; no answer.",
            "yes_no": None,
            "probability": None,
            "concept": concept,
            "scheme": SCHEME,
            "citations": [],
            "paths": [],
        }
    yes = p >= 0.5
    parts = [f"{'Yes' if yes else 'No'}: {label} is {'likely present' if yes else 'unlikely'} (p = {p:.2f})."]
    if p_causal is not None:
        parts.append(f"Causal graph given the image findings: {p_causal:.2f}.")
    if paths:
        parts.append("Supporting paths: " + "; ".join(_path_text(x, names) for x in paths[:3]) + ".")
    cites = (evidence.present if yes else evidence.absent)[:3]
    if cites:
        verb = "report" if yes else "deny"
        parts.append(f"Similar studies that {verb} it: {', '.join(cites)}.")
    contra = (evidence.absent if yes else evidence.present)[:3]
    if contra:
        parts.append(f"Disagreeing studies: {', '.join(contra)}.")
    return {
        "text": " ".join(parts),
        "yes_no": "yes" if yes else "no",
        "probability": round(float(p), 6),
        "concept": concept,
        "scheme": SCHEME,
        "citations": list(cites),
        "paths": [dict(x) for x in paths[:3]],
    }


def write_report(
    image_findings: Sequence[Mapping[str, Any]],
    diagnoses: Sequence[Mapping[str, Any]],
    *,
    evidence_ids: Sequence[str] = (),
    names: Mapping[str, str] | None = None,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """A findings + impression report from V_I and the diagnosis probabilities."""
    names = names or {}
    seen = [f for f in image_findings if f["probability"] >= threshold]
    not_seen = [f for f in image_findings if f["probability"] < 1 - threshold]
    findings = []
    if seen:
        findings.append(
            "The image shows " + ", ".join(f"{_name(f['concept'], names)} (p = {f['probability']:.2f})" for f in seen) + "."
        )
    if not_seen:
        findings.append("No " + ", no ".join(_name(f["concept"], names) for f in not_seen[:6]) + ".")
    if not findings:
        findings.append("No confident image findings.")
    likely = [d for d in diagnoses if d["probability"] >= threshold]
    if likely:
        imp = []
        for d in likely:
            s = f"{_name(d['concept'], names).capitalize()} likely (p = {d['probability']:.2f})"
            if d.get("paths"):
                s += ", via " + _path_text(d["paths"][0], names)
            imp.append(s)
        impression = "; ".join(imp) + "."
    else:
        impression = "No acute cardiopulmonary diagnosis is supported by the causal graph."
    cites = list(evidence_ids[:3])
    text = "FINDINGS: " + " ".join(findings) + " IMPRESSION: " + impression
    if cites:
        text += f" Compare: {', '.join(cites)}."
    return {"text": text, "yes_no": None, "probability": None, "scheme": SCHEME, "citations": cites}

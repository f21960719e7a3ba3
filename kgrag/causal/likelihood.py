"""MCRAG's factorized likelihood of a candidate report (the causal rerank term), pure Python.

    pG(V_D, V_F | V_I) = p(V_F | V_I) · p(V_D | V_F)

For a candidate report R that asserts concepts present or absent, log pG is one
term per asserted concept v (a concept asserted twice counts once):

- v in V_I (the image head, or the query's findings, gives it probability q_v):
  log q_v if R asserts v present, log(1 − q_v) if absent — R's agreement with the
  query image, the p(V_F | V_I) factor;
- any other v (diagnoses, concepts the image cannot show): the log of its noisy-OR
  CPD given its accepted parents, P(v = 1 | pa) = 1 − (1 − leak_v) Π_u (1 − p_uv s_u),
  with the parent state s_u = R's own assertion of u (present 1, absent 0) where R
  states it, else q_u when u is in V_I (the expected noisy-OR), else u's prior
  marginal P(u) (exact, :func:`kgrag.causal.inference.prior_marginals`) — the
  p(V_D | V_F) factor: a report's diagnoses are scored against its own findings.

Each probability is clipped at :data:`LOG_EPS` before the log.  The score is the sum
of the terms (``normalize="sum"``), their mean (``"mean"``), or the lift
(``"lift"``): log pG(R | V_I) − log pG(R | ∅), the same sum minus that of an empty
V_I (every claim by its CPD given the report's own findings, else the prior
marginals).  The lift is the log Bayes factor of the query image for the report:
a claim the image neither supports nor contradicts adds nothing, so a report
that asserts little ("No pneumothorax.") is no longer preferred to one whose
findings the image shows.  A report that asserts nothing scores None.
``score_reports.cypher`` computes the terms in one statement for all candidates;
the ∅ baseline depends on the report and the graph only (:func:`prior_logliks`).
This module is the oracle of both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from kgrag.causal.network import CausalGraph, check_probability
from kgrag.errors import InputError
from kgrag.types import CandidateScore, ReportCandidate

LOG_EPS = 1e-6  # probabilities are clipped here before a log

NORMALIZATIONS = ("sum", "mean", "lift")


def claims(cand: ReportCandidate) -> list[tuple[str, bool]]:
    """(concept, present?) for each concept the candidate asserts, present ones first,
    each once; a concept both asserted and denied is an input error."""
    pres = list(dict.fromkeys(cand.present))
    absn = list(dict.fromkeys(cand.absent))
    both = sorted(set(pres) & set(absn))
    if both:
        raise InputError(f"candidate {cand.id!r} asserts and denies {both}",
                         fix="give each concept one assertion per report (present or absent)")
    return [(c, True) for c in pres] + [(c, False) for c in absn]


def check_observed(observed: Mapping[str, float]) -> dict[str, float]:
    return {str(k): check_probability(f"the V_I probability of {k!r}", q) for k, q in observed.items()}


def check_normalize(normalize: str) -> str:
    if normalize not in NORMALIZATIONS:
        raise InputError(f"normalisation {normalize!r} is not one of {NORMALIZATIONS}",
                         fix="set retrieval.causal_normalize to 'sum', 'mean' or 'lift'")
    return normalize


def claim_probability(graph: CausalGraph, concept: str, stated: Mapping[str, float], observed: Mapping[str, float],
                      priors: Mapping[str, float]) -> tuple[float, str]:
    """P(concept = 1) for one claim and where it came from: ``"image"`` (q from V_I) or ``"cpd"``."""
    if concept in observed:
        return observed[concept], "image"
    none = 1.0 - graph.leak(concept)
    for u, p in graph.parents_of(concept):
        s = stated.get(u)
        if s is None:
            s = observed.get(u)
        if s is None:
            s = priors.get(u, graph.leak(u))
        none *= 1.0 - p * s
    return 1.0 - none, "cpd"


def agreement_log(prob: float, present: bool) -> float:
    x = prob if present else 1.0 - prob
    return math.log(x if x > LOG_EPS else LOG_EPS)


def score_reports(graph: CausalGraph, candidates: Sequence[ReportCandidate], observed: Mapping[str, float], *,
                  priors: Mapping[str, float] | None = None, normalize: str = "mean") -> list[CandidateScore]:
    """log pG for every candidate, in input order.  ``priors`` defaults to the exact prior
    marginals of ``graph`` (of the parents outside V_I that a claim may need)."""
    normalize = check_normalize(normalize)
    observed = check_observed(observed)
    if normalize == "lift":
        scores = score_reports(graph, candidates, observed, priors=priors, normalize="sum")
        return with_lift(scores, prior_logliks(graph, candidates))
    if priors is None:
        from kgrag.causal.inference import prior_marginals

        outside = {c for cand in candidates for c in (*cand.present, *cand.absent) if c not in observed}
        priors = prior_marginals(graph, sorted({u for c in outside for u, _ in graph.parents_of(c)
                                                if u not in observed}))
    out = []
    for cand in candidates:
        cl = claims(cand)
        if not cl:
            out.append(CandidateScore(cand.id, None, 0, []))
            continue
        stated = {c: 1.0 if present else 0.0 for c, present in cl}
        total = 0.0
        per = []
        for c, present in cl:
            prob, src = claim_probability(graph, c, stated, observed, priors)
            total += agreement_log(prob, present)
            per.append({"concept": c, "assertion": "present" if present else "absent", "probability": prob,
                        "term": src})
        out.append(CandidateScore(cand.id, total / len(cl) if normalize == "mean" else total, len(cl), per))
    return out


def prior_logliks(graph: CausalGraph, candidates: Sequence[ReportCandidate]) -> list[float | None]:
    """log pG(R | ∅) of each candidate (V_I empty, terms summed): what the graph alone
    expects of the report's claims.  None for a report that asserts nothing."""
    return [s.loglik for s in score_reports(graph, candidates, {}, normalize="sum")]


def with_lift(scores: Sequence[CandidateScore], baseline: Sequence[float | None]) -> list[CandidateScore]:
    """``scores`` (summed terms) minus the ∅ baseline of each report: the lift."""
    return [CandidateScore(s.id, None if s.loglik is None or b is None else s.loglik - b, s.n, s.per_concept)
            for s, b in zip(scores, baseline, strict=True)]

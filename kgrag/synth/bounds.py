"""What the best possible reader of a ``kgrag synth`` image could score.

The synthetic corpus is drawn from a known model (:mod:`kgrag.synth.model`): diagnoses
→ findings → image findings, and the acquisition site (a child of heart failure).  The
renderers draw only the image-finding states and the site marker, so no reader of the
image, however good, knows more about a diagnosis than P(d | those states).  This
module computes that Bayes-optimal posterior exactly, by enumerating every state of
the unobserved nodes, and from it:

- :func:`auc_bound`: the diagnosis AUC of the Bayes-optimal posterior, an upper bound
  on the AUC of any score computed from the image (or from any subset of the observed
  nodes);
- :func:`vote_bound`: the balanced accuracy of a top-K majority vote with perfect
  retrieval (every retrieved train study shows exactly the query's observed states, K
  large), which fires when P_train(d | states) > 1/2.

Exact means no sampling: the joint distribution of the observed states is a sum over
the 2^(hidden) configurations of the rest (2^18 for the shipped model), done in
numpy.  The AUC of a discrete distribution is scikit-learn's ``roc_auc_score`` with the
probabilities as sample weights (ties count a half, as for any AUC).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: the node of the acquisition site (1 = site B, the marker drawn in the corner)
SITE = "site_b"


@dataclass(frozen=True, slots=True)
class Node:
    """A binary node; ``p1(parent_states)`` is P(node = 1) for an array of parent rows."""

    name: str
    parents: tuple[str, ...]
    p1: Callable[[np.ndarray], np.ndarray]


def root(name: str, prior: float) -> Node:
    return Node(name, (), lambda x, p=prior: np.full(len(x), p))


def noisy_or(name: str, parents: Sequence[tuple[str, float]], leak: float) -> Node:
    strengths = np.array([s for _, s in parents], float)

    def p1(x: np.ndarray) -> np.ndarray:
        keep = np.prod(np.where(x == 1, 1.0 - strengths, 1.0), axis=1) if len(strengths) else np.ones(len(x))
        return 1.0 - (1.0 - leak) * keep

    return Node(name, tuple(u for u, _ in parents), p1)


def table(name: str, parents: Sequence[str], probs: Mapping[tuple[int, ...], float]) -> Node:
    """A node given by its full table: ``probs[(s_1, ..., s_k)]`` = P(node = 1 | parents)."""
    keys = list(itertools.product([0, 1], repeat=len(parents)))
    missing = [k for k in keys if k not in probs]
    if missing:
        raise ValueError(f"node {name!r}: no probability for parent states {missing[:3]}")

    def p1(x: np.ndarray) -> np.ndarray:
        idx = x @ (1 << np.arange(len(parents))[::-1]) if len(parents) else np.zeros(len(x), int)
        lut = np.array([probs[k] for k in keys], float)
        return lut[idx]

    return Node(name, tuple(parents), p1)


def synth_nodes(regime: str = "train") -> list[Node]:
    """The model ``kgrag synth`` draws from, in topological order, the site included.
    ``regime`` is ``train`` (train/val, and the test split without ``--shift``) or
    ``shifted`` (the test split of a ``--shift`` corpus: other priors, the site reversed)."""
    from kgrag.synth import model as m

    if regime not in m.SITE_B_GIVEN:
        raise ValueError(f"unknown regime {regime!r}; use one of {sorted(m.SITE_B_GIVEN)}")
    priors = m.SHIFTED_PRIORS if regime == "shifted" else m.PRIORS
    parents: dict[str, list[tuple[str, float]]] = {}
    for p, c, s in m.EDGES:
        parents.setdefault(c, []).append((p, s))
    nodes: list[Node] = []
    for n in m.topo_order():
        if n == "support_devices":
            continue  # drawn after the site (below)
        nodes.append(root(n, priors[n]) if n in priors else noisy_or(n, parents.get(n, []), m.LEAKS.get(n, 0.0)))
    p_hf, p_nohf = m.SITE_B_GIVEN[regime]
    nodes.append(table(SITE, ["heart_failure"], {(1,): p_hf, (0,): p_nohf}))
    leak, boost = m.LEAKS["support_devices"], m.SITE_B_DEVICE_BOOST
    nodes.append(table("support_devices", [SITE], {(0,): leak, (1,): leak + (1.0 - leak) * boost}))
    return nodes


def image_nodes() -> list[str]:
    """What the renderers draw: the ImageFinding concepts and the site marker."""
    from kgrag.ontology import ids_with_role

    return sorted(ids_with_role("ImageFinding")) + [SITE]


def observed_distribution(nodes: Sequence[Node], observed: Sequence[str], targets: Sequence[str]
                          ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Every pattern of the observed nodes (rows of 0/1, in ``observed`` order), its
    probability P(pattern), and for each target P(target = 1, pattern)."""
    names = [n.name for n in nodes]
    unknown = [o for o in [*observed, *targets] if o not in names]
    if unknown:
        raise ValueError(f"nodes {unknown} are not in the model")
    seen = [t for t in targets if t in observed]
    if seen:
        raise ValueError(f"targets {seen} are observed; a target must be hidden")
    obs = list(observed)
    hidden = [n for n in names if n not in obs]
    if len(hidden) > 22 or len(obs) > 22:
        raise ValueError(f"{len(hidden)} hidden and {len(obs)} observed nodes: too many to enumerate")
    pats = np.array(list(itertools.product([0, 1], repeat=len(obs))), dtype=np.int8).reshape(-1, len(obs))
    cfg = np.array(list(itertools.product([0, 1], repeat=len(hidden))), dtype=np.int8).reshape(-1, len(hidden))
    where = {**{n: ("h", i) for i, n in enumerate(hidden)}, **{n: ("o", i) for i, n in enumerate(obs)}}
    # log P(full assignment) = a term per node.  A node whose scope (itself and its
    # parents) is all hidden adds to a vector over configurations, one all observed to a
    # vector over patterns, and one with hidden parents and an observed value (an image
    # finding) adds log p or log(1 - p) by pattern; any other mix is evaluated on every
    # (configuration, pattern) pair.
    lh, lo = np.zeros(len(cfg)), np.zeros(len(pats))
    outer: list[tuple[np.ndarray, np.ndarray, int]] = []  # (log p, log(1 - p)) per configuration, pattern column
    mixed: list[Node] = []
    with np.errstate(divide="ignore"):
        for node in nodes:
            side = {where[u][0] for u in node.parents}
            me, col = where[node.name]
            idx = [where[u][1] for u in node.parents]
            if side <= {"h"} and me == "h":
                p = np.clip(node.p1(cfg[:, idx]), 0.0, 1.0)
                lh += np.log(np.where(cfg[:, col] == 1, p, 1.0 - p))
            elif side <= {"o"} and me == "o":
                p = np.clip(node.p1(pats[:, idx]), 0.0, 1.0)
                lo += np.log(np.where(pats[:, col] == 1, p, 1.0 - p))
            elif side == {"h"} and me == "o":
                p = np.clip(node.p1(cfg[:, idx]), 0.0, 1.0)
                outer.append((np.log(p), np.log(1.0 - p), col))
            else:
                mixed.append(node)
    p_pat = np.zeros(len(pats))
    joint = {t: np.zeros(len(pats)) for t in targets}
    chunk = max(1, (1 << 22) // max(1, len(pats)))
    for a in range(0, len(cfg), chunk):
        sl = slice(a, a + chunk)
        logp = lh[sl, None] + lo[None, :]
        with np.errstate(divide="ignore"):
            for lp1, lp0, col in outer:
                logp = logp + np.where(pats[None, :, col] == 1, lp1[sl, None], lp0[sl, None])
            for node in mixed:
                h = cfg[sl]
                cols = [h[:, None, where[u][1]].repeat(len(pats), 1) if where[u][0] == "h"
                        else np.broadcast_to(pats[None, :, where[u][1]], (len(h), len(pats))) for u in node.parents]
                x = np.stack(cols, -1).reshape(-1, len(node.parents)) if cols else np.zeros((len(h) * len(pats), 0), np.int8)
                p = np.clip(node.p1(x), 0.0, 1.0).reshape(len(h), len(pats))
                me, col = where[node.name]
                val = h[:, None, col] if me == "h" else pats[None, :, col]
                logp = logp + np.log(np.where(val == 1, p, 1.0 - p))
        w = np.exp(logp)
        p_pat += w.sum(0)
        for t in targets:
            joint[t] += w[cfg[sl, where[t][1]] == 1].sum(0)
    return pats, p_pat, joint


def weighted_auc(score: np.ndarray, w_pos: np.ndarray, w_neg: np.ndarray) -> float:
    """AUC of a score over a discrete population: ``w_pos``/``w_neg`` are the mass of
    positives/negatives at each score (scikit-learn's ``roc_auc_score`` with weights)."""
    from kgrag.deps import require

    sk = require("sklearn.metrics")
    keep_p, keep_n = w_pos > 0, w_neg > 0
    y = np.r_[np.ones(keep_p.sum()), np.zeros(keep_n.sum())]
    s = np.r_[score[keep_p], score[keep_n]]
    return float(sk.roc_auc_score(y, s, sample_weight=np.r_[w_pos[keep_p], w_neg[keep_n]]))


def auc_bound(nodes: Sequence[Node], observed: Sequence[str], targets: Sequence[str],
              reader_nodes: Sequence[Node] | None = None) -> dict[str, float]:
    """Each target's AUC under ``nodes`` (the population scored) of the posterior
    P(target | observed) computed under ``reader_nodes`` (default: the same model, the
    Bayes-optimal reader; pass the train model to get the best reader that learned the
    training distribution exactly)."""
    _, p_pat, joint = observed_distribution(nodes, observed, targets)
    if reader_nodes is None:
        post = {t: np.divide(joint[t], p_pat, out=np.zeros_like(p_pat), where=p_pat > 0) for t in targets}
    else:
        _, rp, rj = observed_distribution(reader_nodes, observed, targets)
        post = {t: np.divide(rj[t], rp, out=np.zeros_like(rp), where=rp > 0) for t in targets}
    return {t: weighted_auc(post[t], joint[t], p_pat - joint[t]) for t in targets}


def vote_bound(test_nodes: Sequence[Node], train_nodes: Sequence[Node], observed: Sequence[str],
               targets: Sequence[str]) -> dict[str, float]:
    """Balanced accuracy on the ``test_nodes`` population of the rule "yes when
    P_train(target | observed) > 1/2": a top-K majority vote over train studies that
    match the query's observed states exactly, in the limit of large K."""
    _, p_pat, joint = observed_distribution(test_nodes, observed, targets)
    _, tp, tj = observed_distribution(train_nodes, observed, targets)
    out = {}
    for t in targets:
        fire = np.divide(tj[t], tp, out=np.zeros_like(tp), where=tp > 0) > 0.5
        pos, neg = joint[t], p_pat - joint[t]
        out[t] = float(0.5 * (pos[fire].sum() / pos.sum() + neg[~fire].sum() / neg.sum()))
    return out

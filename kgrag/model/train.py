"""``kgrag train``: the retrieval model, in four steps.

1. **Encoders.** With images (≥ 8 train studies that have one): image encoder +
   text projection with symmetric InfoNCE (learned temperature) on the train
   split's image–report pairs, plus the findings head (masked, class-balanced BCE) over every
   concept an image can show — every non-diagnosis concept, image findings and
   findings (:func:`data.head_concepts`) — with labels from the report
   assertions (:func:`data.finding_labels`: present 1, absent 0, uncertain
   masked, unmentioned absent or masked per ``models.unmentioned_as``); AdamW
   with cosine decay, per-image shift/intensity and acquisition (zoom, gamma, blur,
   noise) augmentation, each film standardised by the encoder, seeded; early
   stopping on val image→report Recall@5 (the best epoch is kept).
   Without images (a text-only corpus such as IU-Xray): the text projection alone,
   with a multi-positive InfoNCE between the query form users send
   (``--findings``: the findings section) and the reports (positives: concept-set
   Jaccard ≥ 0.5); early stopping on val Recall@10 of that form.
2. **Calibration of the head** (image corpora): per concept, Platt (or temperature)
   scaling on val (:mod:`kgrag.model.calibration`), its val AUC, and the ECE
   before and after (2-fold cross-fitted on val).  A concept whose val AUC is
   below ``models.min_findings_auc`` (0.6), or that val cannot check (one class
   only), is left out of V_I and listed with the reason.
3. **MR-RAG fusion weights** (:mod:`kgrag.model.fusion`), fitted on the query forms
   users send — image only, image + a question generated from the study's
   concept set, image + findings text — per form and jointly, on val queries
   against train ∪ val candidates (multi-positive InfoNCE, temperature learned);
   a text form's γ is then shrunk (½, ¼, 1/10, 0) where that raises val
   Recall@10, so wording alone cannot dominate.  Recall@10 per form is reported
   for the chosen weights, the joint weights, the single terms, and the weights
   the study's own report would give (the old fit).  Text-only corpora have one
   term (text↔text): nothing to weigh; their per-form recall is reported.
4. **RAG-PRM reward model** (:mod:`kgrag.model.reward`) on train triples whose
   queries are the forms users send (image, findings text), with a filter
   threshold per query kind (image / text) and held-out pair accuracy on val.

Leakage guard: only ``train`` and ``val`` are read (:mod:`kgrag.model.data`
refuses ``test``); the manifest lists the splits used.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kgrag.errors import InputError

log = logging.getLogger(__name__)

MIN_TRAIN = 8
FUSION_QUERIES, FUSION_CANDIDATES = 400, 1024
#: fractions of a text form's fitted γ tried on val (wording may not lower Recall@10)
GAMMA_SHRINK = (1.0, 0.5, 0.25, 0.1, 0.0)
REWARD_TRIPLES = 6000
RECALL_K = 10
#: the largest weight of a positive label in the findings head's BCE (rare findings)
MAX_POS_WEIGHT = 20.0
STAGE1_N = 50  # stage-1 candidates per query (the query pipeline's default N)
MIN_YOUDEN_J = 0.05  # a reward threshold that separates less than this is not used


@dataclass
class TrainReport:
    name: str = "default"
    path: str = ""
    modalities: list[str] = field(default_factory=list)  # ["image", "text"] or ["text"]
    n_train: int = 0
    n_val: int = 0
    epochs_run: int = 0
    best_epoch: int = 0
    seconds: float = 0.0
    seconds_contrastive: float = 0.0
    val_recall: dict[str, float] = field(default_factory=dict)  # image→report R@1/5/10 on val (text-only: findings→report)
    chance_recall: dict[str, float] = field(default_factory=dict)
    findings: dict[str, dict[str, Any]] = field(default_factory=dict)  # per head concept: auc, ece, scaling, in V_I
    findings_auc: dict[str, float | None] = field(default_factory=dict)
    visible: list[str] = field(default_factory=list)  # V_I concepts
    excluded: dict[str, str] = field(default_factory=dict)  # head concept → why it is not in V_I
    balance: dict[str, Any] = field(default_factory=dict)  # the findings head's reweighting by a metadata key
    unmentioned: str = "absent"
    fusion: dict[str, Any] = field(default_factory=dict)
    fusion_forms: dict[str, dict[str, Any]] = field(default_factory=dict)
    text_baseline_recall: float | None = None  # text-only: the frozen encoder's own findings→report recall@10
    reward_pair_accuracy: float = 0.0  # on the training triples
    reward_val_pair_accuracy: float = 0.0  # held-out (val queries)
    reward_threshold: float | None = None  # for the model's main query kind (image, or text)
    reward_thresholds: dict[str, float | None] = field(default_factory=dict)  # per query kind; None: filter off
    reward_fit: dict[str, dict[str, Any]] = field(default_factory=dict)  # per kind: J, kept share, val recall with/without
    temperature: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def recall_at(img: np.ndarray, txt: np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
    """Image→report recall@k where report i is the match of image i (rank = number of
    reports scoring strictly higher than the match)."""
    sims = np.asarray(img) @ np.asarray(txt).T
    ranks = (sims > np.diag(sims)[:, None]).sum(axis=1)
    return {f"R@{k}": float(np.mean(ranks < k)) for k in ks}


def chance_recall(n: int, ks=(1, 5, 10)) -> dict[str, float]:
    """Expected recall@k of a random ranking of n reports: k / n."""
    return {f"R@{k}": min(1.0, k / n) if n else 0.0 for k in ks}


def auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC (Mann–Whitney with mid-ranks); NaN without both classes."""
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([pos, neg]))
    return float((r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# -- the findings head on val: AUC, calibration, V_I ----------------------------------------
def select_visible(aucs: dict[str, float | None], min_auc: float,
                   counts: dict[str, tuple[int, int]] | None = None) -> tuple[list[str], dict[str, str]]:
    """(V_I concepts, excluded concept → reason): a concept is in V_I when its val AUC
    is ≥ ``min_auc``; below it, or when val holds one class only (AUC undefined), it
    is left out."""
    visible, excluded = [], {}
    for c, a in aucs.items():
        if a is None or not math.isfinite(a):
            npos, nneg = (counts or {}).get(c, (0, 0))
            excluded[c] = f"val cannot check it: {npos} present, {nneg} absent labels (needs both)"
        elif a < min_auc:
            excluded[c] = f"val AUC {a:.3f} < {min_auc:g}: the head cannot see it"
        else:
            visible.append(c)
    return visible, excluded


def calibrate_head(logits: np.ndarray, y: np.ndarray, mask: np.ndarray, concepts: Sequence[str], *,
                   min_auc: float, method: str = "platt", seed: int = 0) -> tuple[dict[str, Any], dict[str, Any],
                                                                               list[str], dict[str, str]]:
    """Per concept on val: AUC of the head's logits, the scaling fitted on all of val,
    ECE before and after (cross-fitted).  Returns (scalings, stats, visible, excluded)."""
    from kgrag.model import calibration as cal

    scalings, stats, aucs, counts = {}, {}, {}, {}
    for j, c in enumerate(concepts):
        keep = mask[:, j] > 0
        z, t = logits[keep, j].astype(np.float64), y[keep, j].astype(np.float64)
        npos, nneg = int(t.sum()), int(len(t) - t.sum())
        counts[c] = (npos, nneg)
        a = auc(t, z) if len(t) else float("nan")
        aucs[c] = None if math.isnan(a) else round(a, 4)
        sc = cal.fit(z, t, method)
        scalings[c] = sc
        row: dict[str, Any] = {"auc": aucs[c], "n_present": npos, "n_absent": nneg, "a": round(sc.a, 6),
                               "b": round(sc.b, 6), "method": method}
        if npos and nneg:
            raw, after = cal.cross_fitted(z, t, method, seed=seed)
            row.update({"ece_raw": round(raw, 4), "ece_calibrated": round(after, 4)})
        else:
            row.update({"ece_raw": None, "ece_calibrated": None})
        stats[c] = row
    visible, excluded = select_visible(aucs, min_auc, counts)
    for c in concepts:
        stats[c]["in_vi"] = c in visible
        if c in excluded:
            stats[c]["excluded"] = excluded[c]
    return scalings, stats, visible, excluded


# -- fusion on the query forms ---------------------------------------------------------------
def fit_fusion(forms: dict[str, tuple[np.ndarray | None, np.ndarray | None]], q_sets: Sequence[set[str]],
               pool_I: np.ndarray | None, pool_T: np.ndarray, pool_S: Sequence[set[str]], self_idx: np.ndarray,
               rng: np.random.Generator, *, n_candidates: int = FUSION_CANDIDATES, seed: int = 0,
               baseline_text: np.ndarray | None = None,
               temperature: float | None = None) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Fit α/β/γ per query form and jointly, and report Recall@10 per form.

    ``forms``: form name → (query image vectors or None, query text vectors or None),
    row-aligned with ``q_sets``; the pool holds the indexed candidates (``pool_I``
    None for a text-only corpus), query q being pool row ``self_idx[q]`` (−1: not in
    the pool), which is never its own candidate.  ``baseline_text``: the queries'
    own full reports — the text side the weights used to be fitted on — to report
    what those weights give on each form.  ``temperature``: the InfoNCE temperature,
    learned with the weights when None (see :func:`~kgrag.model.fusion.learn_weights`).

    The InfoNCE fit runs over up to ``n_candidates`` sampled candidates per query.
    Then, so that wording alone cannot drag retrieval down, a form with a text side
    keeps the share of its fitted γ (:data:`GAMMA_SHRINK`, α:β as fitted) that gives
    the best Recall@10 over the whole pool; what each share gave is in the report.
    Returns (FusionWeights, per-form report).
    """
    from kgrag.model.fusion import (
        FORMS,
        POSITIVE_JACCARD,
        WEIGHTED_FORMS,
        FusionWeights,
        available,
        fused_relevance,
        jaccard_matrix,
        learn_weights,
        recall_at_k,
    )

    nq, npool = len(q_sets), len(pool_T)
    pos = jaccard_matrix(list(q_sets), list(pool_S)) >= POSITIVE_JACCARD
    valid = np.ones((nq, npool), bool)
    has_self = self_idx >= 0
    valid[np.flatnonzero(has_self), self_idx[has_self]] = False
    pos &= valid
    nc = min(n_candidates, npool - 1)
    cands = np.stack([rng.choice(np.flatnonzero(valid[q]), size=nc, replace=False) for q in range(nq)]) if nq else \
        np.zeros((0, nc), np.int64)

    def sims_of(qi: np.ndarray | None, qt: np.ndarray | None) -> np.ndarray:
        s = np.zeros((nq, npool, 3), np.float64)
        if qi is not None:
            s[:, :, 0] = qi @ pool_T.T
            s[:, :, 1] = qi @ pool_I.T if pool_I is not None else s[:, :, 0]
        if qt is not None:
            s[:, :, 2] = qt @ pool_T.T
        return s

    def recall(w: Any, s: np.ndarray, form: str) -> float:
        rel = np.where(valid, fused_relevance(w, s, form), -np.inf)
        return round(recall_at_k(rel, pos, RECALL_K), 4)

    def fit_rows(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.arange(nq)[:, None]
        return s[rows, cands], pos[rows, cands]

    weighted = [f for f in WEIGHTED_FORMS if f in forms]
    per_form: dict[str, tuple[float, float, float]] = {}
    fits: dict[str, dict[str, Any]] = {}
    stacks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for f in weighted:
        s_fit, p_fit = fit_rows(sims_of(*forms[f]))
        av = np.tile(available(f), (nq, 1))
        w = learn_weights(s_fit, p_fit, avail=av, seed=seed, temperature=temperature, fit=fits.setdefault(f, {}))
        per_form[f] = (w.alpha, w.beta, w.gamma)
        stacks.append((s_fit, p_fit, av))
    # wording may not lower retrieval: a text form keeps the share of its fitted γ (1, ½, ¼,
    # 1/10 or 0, α:β as fitted) that gives the best val Recall@10 (ties keep more of γ)
    for f in weighted:
        if not FORMS[f][1]:
            continue
        a, b, g = per_form[f]
        ia, ib = (per_form["image"][:2] if "image" in per_form else (a, b)) if a + b <= 0 else (a, b)
        s_full = sims_of(*forms[f])
        tried = []
        for k in GAMMA_SHRINK:
            g2 = g * k
            w2 = FusionWeights(ia / (ia + ib) * (1 - g2), ib / (ia + ib) * (1 - g2), g2) if ia + ib > 0 else \
                FusionWeights(0.0, 0.0, 1.0)
            tried.append((recall(w2, s_full, f), k, w2))
        r_best, k_best, w_best = max(tried, key=lambda t: (t[0], t[1]))
        per_form[f] = (w_best.alpha, w_best.beta, w_best.gamma)
        fits[f].update({"gamma_fitted": g, "gamma_share_kept": k_best,
                        "recall@10_by_gamma_share": {str(k): r for r, k, _ in tried}})
    if stacks:
        joint = learn_weights(np.concatenate([x[0] for x in stacks]), np.concatenate([x[1] for x in stacks]),
                              avail=np.concatenate([x[2] for x in stacks]), seed=seed, temperature=temperature,
                              fit=fits.setdefault("joint", {}))
        weights = FusionWeights(joint.alpha, joint.beta, joint.gamma, per_form)
    else:  # text only: relevance is sim(text_q, text_d), one term
        weights = FusionWeights(0.0, 0.0, 1.0)
    baseline = None
    if baseline_text is not None and pool_I is not None and nq:
        s_fit, p_fit = fit_rows(sims_of(forms[weighted[0]][0] if weighted else None, baseline_text))
        baseline = learn_weights(s_fit, p_fit, seed=seed, temperature=temperature, fit=fits.setdefault("own_report", {}))

    n_pos = pos.sum(axis=1)
    keep = n_pos > 0
    chance = float(np.mean(RECALL_K * n_pos[keep] / valid[keep].sum(axis=1) / np.minimum(RECALL_K, n_pos[keep]))) \
        if keep.any() else float("nan")
    report: dict[str, dict[str, Any]] = {}
    for f in forms:
        w = weights.for_form(f)
        m = available(f)
        sims = {f: sims_of(*forms[f])}  # one form at a time: (Q, pool, 3) float64
        row: dict[str, Any] = {"has_image": FORMS[f][0], "has_text": FORMS[f][1], "queries": nq,
                               "fit": {k: round(v, 5) if isinstance(v, float) else v for k, v in fits.get(f, {}).items()},
                               "weights": [round(x, 4) for x in (w.alpha, w.beta, w.gamma)],
                               "weights_effective": [round(x, 4) for x in w.effective(*FORMS[f])],
                               "recall@10": recall(w, sims[f], f), "recall@10_joint": recall(weights.for_form(None), sims[f], f),
                               "recall@10_chance": round(chance, 4)}
        for j, term in enumerate(("image_text", "image_image", "text_text")):
            if m[j]:
                one = FusionWeights(*(1.0 if k == j else 0.0 for k in range(3)))
                row[f"recall@10_{term}_only"] = recall(one, sims[f], f)
        if baseline is not None:
            row["recall@10_own_report_fit"] = recall(baseline, sims[f], f)
        report[f] = row
    if stacks:
        report["joint"] = {"weights": [round(x, 4) for x in (weights.alpha, weights.beta, weights.gamma)],
                           "fit": {k: round(v, 5) if isinstance(v, float) else v for k, v in fits["joint"].items()},
                           "note": "one fit over the image, image+question and image+findings queries together"}
    if baseline is not None:
        report["own_report_fit"] = {"weights": [round(x, 4) for x in (baseline.alpha, baseline.beta, baseline.gamma)],
                                    "fit": {k: round(v, 5) if isinstance(v, float) else v
                                            for k, v in fits["own_report"].items()},
                                    "note": "α/β/γ fitted with each query study's own full report as the text side"}
    return weights, report


# -- text-only encoder ---------------------------------------------------------------------------
def _train_text_projection(f_tr: np.ndarray, t_tr: np.ndarray, sets_tr: list[set[str]], f_va: np.ndarray,
                           t_va: np.ndarray, sets_va: list[set[str]], *, dim: int, epochs: int, batch_size: int,
                           lr: float, patience: int, gen: Any, rep: TrainReport, progress: bool) -> tuple[Any, float]:
    """Multi-positive InfoNCE (both directions) between findings-text queries and
    reports, positives = concept-set Jaccard ≥ 0.5 (a study is its own positive).
    Early stopping on val findings→(train ∪ val) Recall@10; returns (projection, T)."""
    import torch
    from tqdm import tqdm

    from kgrag.model.cnn import TextProjection
    from kgrag.model.fusion import POSITIVE_JACCARD, jaccard_matrix, recall_at_k
    from kgrag.model.losses import MAX_LOG_INV_T

    proj = TextProjection(int(t_tr.shape[1]), dim)
    log_inv_t = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    opt = torch.optim.AdamW(list(proj.parameters()) + [log_inv_t], lr=lr, weight_decay=1e-4)
    bs = max(2, min(batch_size, len(t_tr)))
    steps = max(1, len(t_tr) // bs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps)
    F, T = torch.from_numpy(f_tr), torch.from_numpy(t_tr)
    J = torch.from_numpy((jaccard_matrix(sets_tr, sets_tr) >= POSITIVE_JACCARD).astype(np.float32))
    pool_t = np.concatenate([t_tr, t_va])
    pos_va = jaccard_matrix(sets_va, sets_tr + sets_va) >= POSITIVE_JACCARD
    valid = np.ones_like(pos_va)
    valid[np.arange(len(t_va)), len(t_tr) + np.arange(len(t_va))] = False
    pos_va &= valid

    def multi_pos(logits: Any, p: Any) -> Any:
        lse_all = torch.logsumexp(logits, dim=1)
        lse_pos = torch.logsumexp(logits.masked_fill(p == 0, -1e9), dim=1)
        return (lse_all - lse_pos).mean()

    def val_recall() -> float:
        proj.eval()
        with torch.no_grad():
            q = proj(torch.from_numpy(f_va)).numpy()
            d = proj(torch.from_numpy(pool_t)).numpy()
        proj.train()
        return recall_at_k(np.where(valid, q @ d.T, -np.inf), pos_va, RECALL_K)

    best, best_state, bad = -math.inf, None, 0
    bar = tqdm(range(1, epochs + 1), desc="train text", unit="epoch", disable=not progress)
    for epoch in bar:
        proj.train()
        perm = torch.randperm(len(t_tr), generator=gen)
        losses = []
        for i in range(0, steps * bs, bs):
            idx = perm[i : i + bs]
            zq, zd = proj(F[idx]), proj(T[idx])
            logits = log_inv_t.clamp(max=MAX_LOG_INV_T).exp() * zq @ zd.t()
            p = J[idx][:, idx]
            loss = 0.5 * (multi_pos(logits, p) + multi_pos(logits.t(), p.t()))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        score = val_recall() if len(t_va) >= 2 else -float(np.mean(losses))
        row = {"epoch": epoch, "loss": round(float(np.mean(losses)), 5),
               "temperature": round(1.0 / math.exp(min(float(log_inv_t.detach()), MAX_LOG_INV_T)), 5),
               "findings_recall@10": round(score, 4)}
        rep.history.append(row)
        bar.set_postfix({k: v for k, v in row.items() if k != "epoch"})
        if score > best:
            best, bad, rep.best_epoch = score, 0, epoch
            best_state = ({k: v.clone() for k, v in proj.state_dict().items()}, float(log_inv_t.detach()))
        else:
            bad += 1
            if bad >= patience:
                break
    bar.close()
    proj.load_state_dict(best_state[0])
    proj.eval()
    return proj, 1.0 / min(math.exp(best_state[1]), 100.0)


# -- the entry point -------------------------------------------------------------------------
def train(settings: Any, *, docstore: Any = None, name: str = "default", epochs: int = 12, batch_size: int = 64,
          pooling: str = "lpa", lr: float = 1e-3, patience: int = 3, width: int = 32, findings_weight: float = 1.0,
          text_encoder: Any = None, progress: bool = True, max_train: int | None = None,
          unmentioned: str | None = None, min_findings_auc: float | None = None,
          calibration: str | None = None) -> TrainReport:
    """Train and save the retrieval model into ``settings.models_dir / name``.

    ``text_encoder`` overrides the frozen text encoder (default: the sentence-
    transformers model named by ``settings.models.text_encoder``); ``unmentioned``,
    ``min_findings_auc`` and ``calibration`` override ``settings.models``."""
    import torch

    from kgrag.docstore import DocStore
    from kgrag.model import data
    from kgrag.model.cnn import POOLINGS
    from kgrag.model.encoders import SentenceTextEncoder

    if pooling not in POOLINGS:
        raise InputError(f"pooling {pooling!r} is not one of {POOLINGS}", fix="use --pooling gap, lpa or mspp")
    if epochs < 1 or batch_size < 2:
        raise InputError(f"epochs={epochs}, batch_size={batch_size}", fix="use epochs ≥ 1 and batch size ≥ 2")
    ms = settings.models
    unmentioned = unmentioned or ms.unmentioned_as
    min_auc = ms.min_findings_auc if min_findings_auc is None else float(min_findings_auc)
    method = calibration or ms.calibration
    t0 = time.perf_counter()
    seed = ms.seed
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.set_num_threads(_threads())

    own = docstore is None
    docstore = docstore if docstore is not None else DocStore.from_settings(settings)
    try:
        tr = data.load_split(docstore, "train", progress=progress, limit=max_train)
        with_images = len(tr) >= MIN_TRAIN
        if not with_images:
            n_img = len(tr)
            tr = data.load_split(docstore, "train", limit=max_train, images=False)
            if len(tr) < MIN_TRAIN:
                raise InputError(f"only {len(tr)} train studies ({n_img} with images); need ≥ {MIN_TRAIN}",
                                 fix="ingest a corpus with a train split (kgrag synth or kgrag fetch, then kgrag ingest)")
            log.info("%d train studies, %d with images: training the text side only", len(tr), n_img)
        va = data.load_split(docstore, "val", progress=progress, images=with_images)
        sc = data.split_concepts(docstore, ("train", "val"))
    finally:
        if own:
            docstore.close()
    head = data.head_concepts() if with_images else []
    sets_tr, sets_va = data.present_sets(tr.ids, sc), data.present_sets(va.ids, sc)

    enc = text_encoder if text_encoder is not None else SentenceTextEncoder(ms.text_encoder)
    enc.warm_up()
    from kgrag.ontology import concepts as catalogue

    vocab = [c for c in catalogue() if c != "no_finding"]
    q_va = data.query_questions(sets_va, vocab, rng)
    log.info("encoding %d reports and query texts with %s", len(tr) + len(va), enc.name)

    def encode(texts: list[str]) -> np.ndarray:
        return enc.encode_texts(texts) if texts else np.zeros((0, enc.dim), np.float32)

    t_tr, t_va = encode(tr.reports), encode(va.reports)
    f_tr, f_va = encode(tr.findings_texts), encode(va.findings_texts)
    uq = sorted(set(q_va))
    uq_emb = encode(uq)
    qe_va = uq_emb[[uq.index(q) for q in q_va]] if q_va else np.zeros((0, enc.dim), np.float32)
    fq_va = encode([f"{f} {q}" for f, q in zip(va.findings_texts, q_va, strict=True)])

    dim = ms.embed_dim
    rep = TrainReport(name=name, n_train=len(tr), n_val=len(va), unmentioned=unmentioned,
                      modalities=["image", "text"] if with_images else ["text"])
    if with_images:
        model = _train_image(settings, tr, va, t_tr, t_va, sc, head, enc, rep, dim=dim, epochs=epochs,
                             batch_size=batch_size, pooling=pooling, lr=lr, patience=patience, width=width,
                             findings_weight=findings_weight, unmentioned=unmentioned, gen=gen, progress=progress)
    else:
        from kgrag.model.retrieval_model import RetrievalModel

        if len(va) >= 2:  # what the frozen encoder alone gives on the same form
            from kgrag.model.fusion import POSITIVE_JACCARD, jaccard_matrix, recall_at_k

            pos = jaccard_matrix(sets_va, sets_tr + sets_va) >= POSITIVE_JACCARD
            valid = np.ones_like(pos)
            valid[np.arange(len(va)), len(tr) + np.arange(len(va))] = False
            rep.text_baseline_recall = round(recall_at_k(np.where(valid, f_va @ np.concatenate([t_tr, t_va]).T, -np.inf),
                                                         pos & valid, RECALL_K), 4)
        proj, rep.temperature = _train_text_projection(f_tr, t_tr, sets_tr, f_va, t_va, sets_va, dim=dim, epochs=epochs,
                                                       batch_size=batch_size, lr=lr, patience=patience, gen=gen, rep=rep,
                                                       progress=progress)
        rep.epochs_run = len(rep.history)
        rep.seconds_contrastive = time.perf_counter() - t0
        model = RetrievalModel(None, proj, enc, [])
    proj_np = model.project_text_embeddings
    zt_tr, zt_va = proj_np(t_tr), proj_np(t_va)
    zf_tr, zf_va, zq_va, zfq_va = proj_np(f_tr), proj_np(f_va), proj_np(qe_va), proj_np(fq_va)
    zi_tr = zi_va = None
    if with_images:
        zi_tr, _ = _image_outputs(model.image_encoder, tr.images)
        zi_va, logits_va = _image_outputs(model.image_encoder, va.images)
        if len(va) >= 2:
            rep.val_recall = recall_at(zi_va, zt_va)
            rep.chance_recall = chance_recall(len(va))
            y_va, m_va = data.finding_labels(va.ids, sc, head, unmentioned=unmentioned)
            scal, stats, visible, excluded = calibrate_head(logits_va, y_va, m_va, head, min_auc=min_auc, method=method,
                                                            seed=seed)
        else:  # nothing to check the head on: V_I stays empty rather than unverified
            scal, visible = {}, []
            stats = {c: {"auc": None, "in_vi": False} for c in head}
            excluded = {c: "no val split to check it on" for c in head}
        model.calibration, model.visible = scal, visible
        rep.findings, rep.visible, rep.excluded = stats, visible, excluded
        rep.findings_auc = {c: stats[c]["auc"] for c in head}
    elif len(va) >= 2:
        from kgrag.model.fusion import POSITIVE_JACCARD, jaccard_matrix, recall_at_k

        pos = jaccard_matrix(sets_va, sets_tr + sets_va) >= POSITIVE_JACCARD
        valid = np.ones_like(pos)
        valid[np.arange(len(va)), len(tr) + np.arange(len(va))] = False
        rel = np.where(valid, zf_va @ np.concatenate([zt_tr, zt_va]).T, -np.inf)
        rep.val_recall = {"findings_R@10": round(recall_at_k(rel, pos & valid, RECALL_K), 4)}

    # -- 3. fusion weights on the query forms ------------------------------------------------
    use_val = len(va) >= 20
    if use_val:
        qsel = rng.choice(len(va), size=min(FUSION_QUERIES, len(va)), replace=False)
        q_sets = [sets_va[i] for i in qsel]
        self_idx = len(tr) + qsel
        pool_T = np.concatenate([zt_tr, zt_va])
        pool_I = np.concatenate([zi_tr, zi_va]) if with_images else None
        pool_S = sets_tr + sets_va
        qi, qf, qq, qfq, own_t = (None if zi_va is None else zi_va[qsel]), zf_va[qsel], zq_va[qsel], zfq_va[qsel], zt_va[qsel]
    else:  # a tiny corpus: train queries against the other train studies
        qsel = rng.choice(len(tr), size=min(FUSION_QUERIES, len(tr)), replace=False)
        q_sets = [sets_tr[i] for i in qsel]
        self_idx = qsel
        pool_T, pool_I, pool_S = zt_tr, zi_tr, sets_tr
        q_tr = data.query_questions([sets_tr[i] for i in qsel], vocab, rng)
        qi = None if zi_tr is None else zi_tr[qsel]
        qf, qq = zf_tr[qsel], model.encode_texts(q_tr)
        qfq = model.encode_texts([f"{tr.findings_texts[i]} {q}" for i, q in zip(qsel, q_tr, strict=True)])
        own_t = zt_tr[qsel]
    forms: dict[str, tuple[np.ndarray | None, np.ndarray | None]] = {
        "findings": (None, qf), "question": (None, qq), "findings+question": (None, qfq)}
    if with_images:
        forms = {"image": (qi, None), "image+question": (qi, qq), "image+findings": (qi, qf), **forms}
    model.fusion, rep.fusion_forms = fit_fusion(forms, q_sets, pool_I, pool_T, pool_S, np.asarray(self_idx), rng,
                                                seed=seed, baseline_text=own_t if with_images else None)
    rep.fusion = model.fusion.to_dict()

    # -- 4. reward model -----------------------------------------------------------------------
    q_tr_questions = data.query_questions(sets_tr, vocab, rng)
    uq_tr = sorted(set(q_tr_questions))
    uq_tr_emb = model.encode_texts(uq_tr)
    zq_tr = uq_tr_emb[[uq_tr.index(x) for x in q_tr_questions]]
    q_train = {"text": zf_tr, "question": zq_tr}
    if with_images:
        q_train = {"image": zi_tr, **q_train}
    stage1: dict[str, tuple[np.ndarray, list[set[str]], np.ndarray]] = {}
    val_triples = None
    if use_val:
        kq = {"image": (qi, None, "image"), "text": (None, qf, "findings"), "question": (None, qq, "question")}
        for kind in q_train:
            i_vecs, t_vecs, form = kq[kind]
            cand = stage1_candidates(model.fusion.for_form(form), form, i_vecs, t_vecs, pool_I, pool_T,
                                     np.asarray(self_idx), min(STAGE1_N, len(pool_T) - 1))
            stage1[kind] = (i_vecs if i_vecs is not None else t_vecs, q_sets, cand)
        val_triples = ({"image": zi_va, "text": zf_va, "question": zq_va}, sets_va)
    reward_meta = _train_reward(model, rep, rng, dim=dim, seed=seed, sets_tr=sets_tr, zt_tr=zt_tr, q_train=q_train,
                                val_triples=val_triples, stage1=stage1, pool_T=pool_T, pool_S=pool_S)

    rep.seconds = time.perf_counter() - t0
    model.manifest = {
        "name": name, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seed": seed,
        "training": {"epochs": epochs, "epochs_run": rep.epochs_run, "best_epoch": rep.best_epoch,
                     "batch_size": batch_size, "lr": lr, "weight_decay": 1e-4, "patience": patience,
                     "findings_weight": findings_weight, "optimizer": "AdamW+cosine",
                     "augmentation": {"max_shift": data.MAX_SHIFT, "contrast": data.CONTRAST, "brightness": data.BRIGHTNESS,
                                      "scale": data.SCALE, "aspect": data.ASPECT, "gamma": data.GAMMA,
                                      "blur_p": data.BLUR_P, "noise": data.NOISE},
                     "standardize_images": True, "balance": rep.balance,
                     "temperature": rep.temperature,
                     "early_stopping": "val image→report R@5" if with_images else "val findings→report recall@10",
                     "objective": f"symmetric InfoNCE image↔report + masked BCE findings head (pos_weight = negatives/positives, "
                                  f"≤ {MAX_POS_WEIGHT:g})" if with_images
                     else "multi-positive InfoNCE findings text↔report (concept Jaccard ≥ 0.5)",
                     "findings_labels": f"present=1, absent=0, uncertain masked, unmentioned "
                                        f"{'=0' if unmentioned == 'absent' else 'masked'}"},
        "findings_head": {"roles": list(data.HEAD_ROLES), "unmentioned": unmentioned, "min_auc": min_auc,
                          "calibration": method, "fitted_on": "val"} if with_images else None,
        "calibration": rep.findings, "excluded": rep.excluded,
        "fusion_fit": {"on": "val" if use_val else "train", "queries": len(q_sets), "candidates": FUSION_CANDIDATES,
                       "positive_jaccard": 0.5, "forms": rep.fusion_forms},
        "reward": reward_meta, "n_train": len(tr), "n_val": len(va), "splits_used": ["train", "val"],
        "metrics": {"val_recall": rep.val_recall, "chance_recall": rep.chance_recall, "findings_auc": rep.findings_auc,
                    "text_baseline_recall": rep.text_baseline_recall},
        "train_seconds": round(rep.seconds, 2),
    }
    out = settings.models_dir / name
    model.save(out)
    rep.path = str(out)
    return rep


def _image_outputs(img_enc: Any, images: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, head logits) of uint8 (n, H, W) images, in eval mode."""
    import torch

    from kgrag.model import data

    img_enc.eval()
    nf = img_enc.findings.out_features if img_enc.findings is not None else 0
    zs, ls = [np.zeros((0, img_enc.embed_dim), np.float32)], [np.zeros((0, nf), np.float32)]
    with torch.no_grad():
        for i in range(0, len(images), batch):
            z, logit = img_enc(data.to_float(torch.from_numpy(images[i : i + batch])))
            zs.append(z.numpy())
            if logit is not None:
                ls.append(logit.numpy())
    return np.concatenate(zs), np.concatenate(ls)


def _train_image(settings: Any, tr: Any, va: Any, t_tr: np.ndarray, t_va: np.ndarray, sc: dict, head: list[str],
                 enc: Any, rep: TrainReport, *, dim: int, epochs: int, batch_size: int, pooling: str, lr: float,
                 patience: int, width: int, findings_weight: float, unmentioned: str, gen: Any, progress: bool) -> Any:
    """Step 1 with images: the CNN, the text projection and the findings head."""
    import torch
    from tqdm import tqdm

    from kgrag.model import data
    from kgrag.model.cnn import ImageEncoder, TextProjection
    from kgrag.model.losses import info_nce, temperature
    from kgrag.model.retrieval_model import RetrievalModel

    t0 = time.perf_counter()
    y_tr, m_tr = data.finding_labels(tr.ids, sc, head, unmentioned=unmentioned)
    key = settings.models.balance_by
    groups = [(getattr(st, "meta", None) or {}).get(key) for st in tr.studies] if key else [None] * len(tr)
    w_tr = data.balance_weights(groups, y_tr, m_tr)
    rep.balance = {"by": key or None, "groups": dict(sorted(Counter(str(g) for g in groups).items())) if key else {},
                   "reweighted": bool(key) and len(set(groups)) > 1}
    img_enc = ImageEncoder(dim, len(head), pooling, width)
    txt_proj = TextProjection(int(t_tr.shape[1]), dim)
    log_inv_t = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    params = list(img_enc.parameters()) + list(txt_proj.parameters()) + [log_inv_t]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    steps_per_epoch = max(1, len(tr) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    X, T = torch.from_numpy(tr.images), torch.from_numpy(t_tr)
    Y, M = torch.from_numpy(y_tr), torch.from_numpy(m_tr * w_tr)  # the mask carries the balancing weights
    # class-balanced: a finding present in 3% of the studies weighs as much as its negatives
    pos = (Y * M).sum(0)
    neg = ((1 - Y) * M).sum(0)
    bce = torch.nn.BCEWithLogitsLoss(reduction="none", pos_weight=(neg / pos.clamp(min=1)).clamp(1.0, MAX_POS_WEIGHT))
    model = RetrievalModel(img_enc, txt_proj, enc, head)

    best, best_state, bad = -math.inf, None, 0
    bar = tqdm(range(1, epochs + 1), desc="train", unit="epoch", disable=not progress)
    for epoch in bar:
        img_enc.train()
        txt_proj.train()
        perm = torch.randperm(len(tr), generator=gen)
        losses = []
        # drop the last incomplete batch: InfoNCE needs in-batch negatives
        for i in range(0, steps_per_epoch * batch_size, batch_size):
            idx = perm[i : i + batch_size]
            zi, logits = img_enc(data.acquisition(data.augment(data.to_float(X[idx]), gen), gen))
            zt = txt_proj(T[idx])
            loss = info_nce(zi, zt, log_inv_t)
            if logits is not None and findings_weight:
                loss = loss + findings_weight * (bce(logits, Y[idx]) * M[idx]).sum() / M[idx].sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        if len(va) >= 2:
            r = recall_at(_image_outputs(img_enc, va.images)[0], model.project_text_embeddings(t_va))
            score = r["R@5"]
        else:
            r, score = {}, -float(np.mean(losses))
        row = {"epoch": epoch, "loss": round(float(np.mean(losses)), 5),
               "temperature": round(temperature(log_inv_t), 5), **r}
        rep.history.append(row)
        log.info("epoch %d: %s", epoch, row)
        bar.set_postfix({k: v for k, v in row.items() if k != "epoch"})
        if score > best:
            best, bad, rep.best_epoch = score, 0, epoch
            best_state = ({k: v.clone() for k, v in img_enc.state_dict().items()},
                          {k: v.clone() for k, v in txt_proj.state_dict().items()}, float(log_inv_t.detach()))
        else:
            bad += 1
            if bad >= patience:
                log.info("early stop after epoch %d (best %d)", epoch, rep.best_epoch)
                break
    bar.close()
    rep.epochs_run = len(rep.history)
    img_enc.load_state_dict(best_state[0])
    txt_proj.load_state_dict(best_state[1])
    img_enc.eval()
    txt_proj.eval()
    rep.temperature = 1.0 / min(math.exp(best_state[2]), 100.0)
    rep.seconds_contrastive = time.perf_counter() - t0
    return model


def stage1_candidates(w: Any, form: str, qi: np.ndarray | None, qt: np.ndarray | None, pool_I: np.ndarray | None,
                      pool_T: np.ndarray, self_idx: np.ndarray, n: int) -> np.ndarray:
    """(Q, n) pool rows of each query's stage-1 top n by the form's fused relevance (its own
    row, ``self_idx``, left out), as the query pipeline would rank them."""
    from kgrag.model.fusion import fused_relevance

    nq = len(qi) if qi is not None else len(qt)
    s = np.zeros((nq, len(pool_T), 3))
    if qi is not None:
        s[:, :, 0] = qi @ pool_T.T
        s[:, :, 1] = qi @ pool_I.T if pool_I is not None else s[:, :, 0]
    if qt is not None:
        s[:, :, 2] = qt @ pool_T.T
    rel = fused_relevance(w, s, form)
    has = self_idx >= 0
    rel[np.flatnonzero(has), self_idx[has]] = -np.inf
    return np.argsort(-rel, axis=1, kind="stable")[:, :n]


def _train_reward(model: Any, rep: TrainReport, rng: np.random.Generator, *, dim: int, seed: int,
                  sets_tr: list[set[str]], zt_tr: np.ndarray, q_train: dict[str, np.ndarray],
                  val_triples: tuple[dict[str, np.ndarray], list[set[str]]] | None,
                  stage1: dict[str, tuple[np.ndarray, list[set[str]], np.ndarray]], pool_T: np.ndarray,
                  pool_S: list[set[str]]) -> dict[str, Any]:
    """Step 4: the reward model and its filter thresholds.

    Training triples (query, better, worse context) take their query in the forms a query
    arrives in (``q_train``: image vectors, findings-text vectors, question vectors).  The
    threshold of each query kind is fitted where the filter runs: on the val queries'
    stage-1 candidates (``stage1``: kind → (query vectors, query concept sets, (Q, N) pool
    rows)), relevant = Jaccard ≥ 0.5, τ = max Youden J.  A kind whose rewards do not
    separate relevant from irrelevant candidates (J < :data:`MIN_YOUDEN_J`) gets no
    threshold: its filter stays off, with the reason recorded.  The effect on val —
    Recall@10 and evidence kept, with and without the filter — is recorded too."""
    from kgrag.model import data
    from kgrag.model.fusion import POSITIVE_JACCARD, jaccard_matrix
    from kgrag.model.reward import pair_accuracy, train_reward, youden_threshold
    from kgrag.model.reward import score as reward_score

    kinds = list(q_train)

    def triples(qv: dict[str, np.ndarray], q_sets: list[set[str]], n: int, same_pool: bool):
        t = data.overlap_pairs(q_sets, sets_tr, n, rng, same_pool=same_pool)
        if not len(t):
            return (np.zeros((0, dim), np.float32),) * 3
        kind = rng.integers(len(kinds), size=len(t))
        q = np.stack([qv[kinds[k]][i] for k, i in zip(kind, t[:, 0], strict=True)])
        return q, zt_tr[t[:, 1]], zt_tr[t[:, 2]]

    q, dp, dn = triples(q_train, sets_tr, min(REWARD_TRIPLES, 4 * len(sets_tr)), True)
    if len(q) == 0:
        raise InputError("no (better, worse) context pairs: every train study has the same concepts",
                         fix="ingest a corpus whose reports mention findings (run kgrag extract)")
    reward, acc = train_reward(q, dp, dn, dim=dim, seed=seed)
    model.reward_model = reward
    rep.reward_pair_accuracy = acc
    meta: dict[str, Any] = {"train_pair_accuracy": acc, "n_train_triples": len(q), "relevant_jaccard": POSITIVE_JACCARD,
                            "query_kinds": kinds, "threshold": None, "thresholds": {k: None for k in kinds},
                            "threshold_rule": "max Youden J over the val queries' stage-1 candidates, per query kind; "
                                              f"no threshold (filter off) when J < {MIN_YOUDEN_J}",
                            "fit": {}}
    if val_triples is not None:
        vq, vdp, vdn = triples(val_triples[0], val_triples[1], 2000, False)
        rep.reward_val_pair_accuracy = pair_accuracy(reward, vq, vdp, vdn) if len(vq) else float("nan")
        meta["val_pair_accuracy"] = rep.reward_val_pair_accuracy
    for kind, (qv, q_sets, cand) in stage1.items():
        nq, n = cand.shape
        r = reward_score(reward, np.repeat(qv, n, axis=0), pool_T[cand.reshape(-1)]).reshape(nq, n)
        pos_all = jaccard_matrix(q_sets, pool_S) >= POSITIVE_JACCARD
        rel = np.take_along_axis(pos_all, cand, axis=1)
        row: dict[str, Any] = {"queries": nq, "candidates": n, "relevant_share": round(float(rel.mean()), 4)}
        if rel.any() and (~rel).any():
            thr, tpr, fpr = youden_threshold(r.reshape(-1), rel.reshape(-1))
            row.update({"youden_j": round(tpr - fpr, 4), "tpr": round(tpr, 4), "fpr": round(fpr, 4)})
            if tpr - fpr >= MIN_YOUDEN_J:
                meta["thresholds"][kind] = thr
                kept = [c[r[i] >= thr] if (r[i] >= thr).any() else c[:1] for i, c in enumerate(cand)]
                n_pos = pos_all.sum(axis=1)
                ok = n_pos > 0

                def recall(rows: list[np.ndarray], pos_all=pos_all, n_pos=n_pos, ok=ok) -> float:
                    return round(float(np.mean([pos_all[i, rr[:RECALL_K]].sum() / min(RECALL_K, n_pos[i])
                                                for i, rr in enumerate(rows) if ok[i]])), 4)

                row.update({"threshold": round(thr, 6), "kept_share": round(float(np.mean([len(k) / n for k in kept])), 4),
                            "recall@10_without": recall(list(cand)), "recall@10_with": recall(kept),
                            "evidence@10_with": round(float(np.mean([min(RECALL_K, len(k)) for k in kept])), 3)})
            else:
                row["off"] = f"rewards do not separate relevant stage-1 candidates (J = {tpr - fpr:.3f} < {MIN_YOUDEN_J})"
        else:
            row["off"] = "val stage-1 candidates hold one class only"
        meta["fit"][kind] = row
    main = "image" if "image" in kinds else "text"
    meta["threshold"] = meta["thresholds"].get(main)
    rep.reward_thresholds = dict(meta["thresholds"])
    rep.reward_threshold = meta["threshold"]
    rep.reward_fit = meta["fit"]
    return meta

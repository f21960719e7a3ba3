"""``kgrag train``: the retrieval model, in three steps.

1. Image encoder + text projection with symmetric InfoNCE (learned temperature)
   on the train split's image–report pairs, plus the image-findings head (masked
   BCE on labels from the extracted mentions, see :func:`data.finding_labels`);
   AdamW with cosine decay, per-image shift/intensity augmentation, seeded;
   early stopping on val image→report Recall@5 (the best epoch is kept).
2. MR-RAG fusion weights α, β, γ (:mod:`kgrag.model.fusion`), fitted on val
   queries against candidates drawn from train ∪ val — the situation at query
   time, a new image against indexed studies (train if val has < 20 studies).
3. The RAG-PRM reward model (:mod:`kgrag.model.reward`) on train triples; its
   filter threshold and held-out pair accuracy on val.

Leakage guard: only ``train`` and ``val`` are read (:mod:`kgrag.model.data`
refuses ``test``); the manifest lists the splits used.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kgrag.errors import InputError

log = logging.getLogger(__name__)

MIN_TRAIN = 8
FUSION_QUERIES, FUSION_CANDIDATES = 400, 64
REWARD_TRIPLES = 6000


@dataclass
class TrainReport:
    name: str = "default"
    path: str = ""
    n_train: int = 0
    n_val: int = 0
    epochs_run: int = 0
    best_epoch: int = 0
    seconds: float = 0.0
    seconds_contrastive: float = 0.0
    val_recall: dict[str, float] = field(default_factory=dict)  # image→report R@1/5/10 on val
    chance_recall: dict[str, float] = field(default_factory=dict)
    findings_auc: dict[str, float | None] = field(default_factory=dict)
    fusion: dict[str, float] = field(default_factory=dict)
    reward_pair_accuracy: float = 0.0  # on the training triples
    reward_val_pair_accuracy: float = 0.0  # held-out (val queries)
    reward_threshold: float | None = None
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


def train(settings: Any, *, docstore: Any = None, name: str = "default", epochs: int = 12, batch_size: int = 64,
          pooling: str = "lpa", lr: float = 1e-3, patience: int = 3, width: int = 32, findings_weight: float = 1.0,
          text_encoder: Any = None, progress: bool = True, max_train: int | None = None) -> TrainReport:
    """Train and save the retrieval model into ``settings.models_dir / name``.

    ``text_encoder`` overrides the frozen text encoder (default: the sentence-
    transformers model named by ``settings.models.text_encoder``)."""
    import torch
    from tqdm import tqdm

    from kgrag.docstore import DocStore
    from kgrag.model import data
    from kgrag.model.cnn import POOLINGS, ImageEncoder, TextProjection
    from kgrag.model.encoders import SentenceTextEncoder
    from kgrag.model.losses import info_nce, temperature
    from kgrag.model.retrieval_model import RetrievalModel
    from kgrag.ontology import ids_with_role

    if pooling not in POOLINGS:
        raise InputError(f"pooling {pooling!r} is not one of {POOLINGS}", fix="use --pooling gap, lpa or mspp")
    if epochs < 1 or batch_size < 2:
        raise InputError(f"epochs={epochs}, batch_size={batch_size}", fix="use epochs ≥ 1 and batch size ≥ 2")
    t0 = time.perf_counter()
    seed = settings.models.seed
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.set_num_threads(_threads())

    own = docstore is None
    docstore = docstore if docstore is not None else DocStore.from_settings(settings)
    try:
        tr = data.load_split(docstore, "train", progress=progress, limit=max_train)
        va = data.load_split(docstore, "val", progress=progress)
        sc = data.split_concepts(docstore, ("train", "val"))
    finally:
        if own:
            docstore.close()
    if len(tr) < MIN_TRAIN:
        raise InputError(f"only {len(tr)} train studies with images (need ≥ {MIN_TRAIN})",
                         fix="ingest a corpus with images and a train split (kgrag synth, then kgrag ingest)")
    findings = ids_with_role("ImageFinding")
    y_tr, m_tr = data.finding_labels(tr.ids, sc, findings)
    y_va, m_va = data.finding_labels(va.ids, sc, findings)

    enc = text_encoder if text_encoder is not None else SentenceTextEncoder(settings.models.text_encoder)
    enc.warm_up()
    log.info("encoding %d reports with %s", len(tr) + len(va), enc.name)
    t_tr = enc.encode_texts(tr.reports)
    t_va = enc.encode_texts(va.reports) if len(va) else np.zeros((0, enc.dim), np.float32)

    dim = settings.models.embed_dim
    img_enc = ImageEncoder(dim, len(findings), pooling, width)
    txt_proj = TextProjection(int(t_tr.shape[1]), dim)
    log_inv_t = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    params = list(img_enc.parameters()) + list(txt_proj.parameters()) + [log_inv_t]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    steps_per_epoch = max(1, len(tr) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    X, T = torch.from_numpy(tr.images), torch.from_numpy(t_tr)
    Y, M = torch.from_numpy(y_tr), torch.from_numpy(m_tr)
    bce = torch.nn.BCEWithLogitsLoss(reduction="none")

    def embed(images: np.ndarray, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        img_enc.eval()
        txt_proj.eval()
        zi, pr = [np.zeros((0, dim), np.float32)], [np.zeros((0, len(findings)), np.float32)]
        with torch.no_grad():
            for i in range(0, len(images), 256):
                z, logit = img_enc(data.to_float(torch.from_numpy(images[i : i + 256])))
                zi.append(z.numpy())
                pr.append(torch.sigmoid(logit).numpy())
            zt = txt_proj(torch.from_numpy(texts)).numpy() if len(texts) else np.zeros((0, dim), np.float32)
        return np.concatenate(zi), zt, np.concatenate(pr)

    rep = TrainReport(name=name, n_train=len(tr), n_val=len(va))
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
            zi, logits = img_enc(data.augment(data.to_float(X[idx]), gen))
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
            zi_v, zt_v, _ = embed(va.images, t_va)
            r = recall_at(zi_v, zt_v)
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
    rep.temperature = 1.0 / min(math.exp(best_state[2]), 100.0)
    rep.seconds_contrastive = time.perf_counter() - t0
    zi_tr, zt_tr, _ = embed(tr.images, t_tr)
    zi_va, zt_va, probs_va = embed(va.images, t_va)
    if len(va) >= 2:
        rep.val_recall = recall_at(zi_va, zt_va)
        rep.chance_recall = chance_recall(len(va))
        for j, c in enumerate(findings):
            keep = m_va[:, j] > 0
            a = auc(y_va[keep, j], probs_va[keep, j])
            rep.findings_auc[c] = None if math.isnan(a) else round(a, 4)  # None: one class only in val

    model = RetrievalModel(img_enc, txt_proj, enc, findings)
    sets_tr, sets_va = data.present_sets(tr.ids, sc), data.present_sets(va.ids, sc)

    # -- 2. fusion weights ---------------------------------------------------------------
    from kgrag.model.fusion import learn_weights, overlap_positives

    use_val = len(va) >= 20
    qI, qT, qS = (zi_va, zt_va, sets_va) if use_val else (zi_tr, zt_tr, sets_tr)
    pool_I = np.concatenate([zi_tr, zi_va]) if use_val else zi_tr
    pool_T = np.concatenate([zt_tr, zt_va]) if use_val else zt_tr
    pool_S = sets_tr + sets_va if use_val else sets_tr
    offset = len(tr) if use_val else 0  # position of query i inside the pool
    nq, nc = min(FUSION_QUERIES, len(qI)), min(FUSION_CANDIDATES, len(pool_I) - 1)
    sims = np.zeros((nq, nc, 3), np.float32)
    pos = np.zeros((nq, nc), bool)
    for a, qi in enumerate(rng.choice(len(qI), size=nq, replace=False)):
        cands = rng.choice(np.delete(np.arange(len(pool_I)), offset + qi), size=nc, replace=False)
        sims[a, :, 0] = pool_T[cands] @ qI[qi]
        sims[a, :, 1] = pool_I[cands] @ qI[qi]
        sims[a, :, 2] = pool_T[cands] @ qT[qi]
        pos[a] = overlap_positives([qS[qi]], [pool_S[c] for c in cands])[0]
    model.fusion = learn_weights(sims, pos, seed=seed)
    rep.fusion = model.fusion.to_dict()

    # -- 3. reward model -----------------------------------------------------------------
    from kgrag.model.reward import pair_accuracy, train_reward, youden_threshold
    from kgrag.model.reward import score as reward_score

    def triples(q_img, q_txt, q_sets, n, same_pool):
        t = data.overlap_pairs(q_sets, sets_tr, n, rng, same_pool=same_pool)
        use_text = rng.random(len(t)) < 0.5  # queries are images, or texts when there is no image
        q = np.where(use_text[:, None], q_txt[t[:, 0]], q_img[t[:, 0]]) if len(t) else np.zeros((0, dim), np.float32)
        return q, zt_tr[t[:, 1]], zt_tr[t[:, 2]]

    q, dp, dn = triples(zi_tr, zt_tr, sets_tr, min(REWARD_TRIPLES, 4 * len(tr)), True)
    if len(q) == 0:
        raise InputError("no (better, worse) context pairs: every train study has the same concepts",
                         fix="ingest a corpus whose reports mention findings (run kgrag extract)")
    reward, acc = train_reward(q, dp, dn, dim=dim, seed=seed)
    model.reward_model = reward
    rep.reward_pair_accuracy = acc
    reward_meta: dict[str, Any] = {"train_pair_accuracy": acc, "n_train_triples": len(q),
                                   "relevant_jaccard": 0.5, "threshold": None}
    if len(va) >= 2:
        vq, vdp, vdn = triples(zi_va, zt_va, sets_va, 2000, False)
        rep.reward_val_pair_accuracy = pair_accuracy(reward, vq, vdp, vdn)
        from kgrag.model.fusion import jaccard

        qi = rng.integers(len(va), size=2000)
        di = rng.integers(len(tr), size=2000)
        r_val = reward_score(reward, zi_va[qi], zt_tr[di])
        rel = np.array([jaccard(sets_va[a], sets_tr[b]) >= 0.5 for a, b in zip(qi, di, strict=True)])
        if rel.any() and (~rel).any():
            thr, tpr, fpr = youden_threshold(r_val, rel)
            rep.reward_threshold = thr
            reward_meta.update({"threshold": thr, "threshold_tpr": tpr, "threshold_fpr": fpr,
                                "threshold_rule": "max Youden J on val image queries vs train contexts"})
        reward_meta["val_pair_accuracy"] = rep.reward_val_pair_accuracy

    rep.seconds = time.perf_counter() - t0
    model.manifest = {
        "name": name, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seed": seed,
        "training": {"epochs": epochs, "epochs_run": rep.epochs_run, "best_epoch": rep.best_epoch,
                     "batch_size": batch_size, "lr": lr, "weight_decay": 1e-4, "patience": patience,
                     "findings_weight": findings_weight, "optimizer": "AdamW+cosine",
                     "augmentation": {"max_shift": data.MAX_SHIFT, "contrast": data.CONTRAST, "brightness": data.BRIGHTNESS},
                     "temperature": rep.temperature, "early_stopping": "val image→report R@5",
                     "findings_labels": "present=1, absent or unmentioned=0, uncertain masked"},
        "fusion_fit": {"on": "val" if use_val else "train", "queries": nq, "candidates": nc, "positive_jaccard": 0.5},
        "reward": reward_meta, "n_train": len(tr), "n_val": len(va), "splits_used": ["train", "val"],
        "metrics": {"val_recall": rep.val_recall, "chance_recall": rep.chance_recall, "findings_auc": rep.findings_auc},
        "train_seconds": round(rep.seconds, 2),
    }
    out = settings.models_dir / name
    model.save(out)
    rep.path = str(out)
    return rep

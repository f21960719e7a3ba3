"""``kgrag train``: image encoder + text projection (symmetric InfoNCE, learned
temperature) with a multi-label image-findings head, then MR-RAG fusion weights,
then the reward model.  Train split only for fitting, val for early stopping;
the test split is never read."""

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


@dataclass
class TrainReport:
    name: str = "default"
    path: str = ""
    n_train: int = 0
    n_val: int = 0
    epochs_run: int = 0
    best_epoch: int = 0
    seconds: float = 0.0
    val_recall: dict[str, float] = field(default_factory=dict)  # image→report R@1/5/10 on val
    chance_recall: dict[str, float] = field(default_factory=dict)
    findings_auc: dict[str, float] = field(default_factory=dict)
    fusion: dict[str, float] = field(default_factory=dict)
    reward_pair_accuracy: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def recall_at(img: np.ndarray, txt: np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
    """Image→report recall@k where report i is the match of image i."""
    sims = img @ txt.T
    ranks = (sims > np.diag(sims)[:, None]).sum(axis=1)
    return {f"R@{k}": float(np.mean(ranks < k)) for k in ks}


def auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([pos, neg]))
    return float((r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _load(docstore: Any, split: str, progress: bool):
    from tqdm import tqdm

    from kgrag.ingest.images import load_image

    studies = [s for s in docstore.studies(split=split) if s.images]
    imgs = np.zeros((len(studies), 128, 128), np.uint8)
    for i, s in enumerate(tqdm(studies, desc=f"load {split}", unit="img", disable=not progress)):
        imgs[i] = np.round(load_image(s.images[0], size=128) * 255).astype(np.uint8)
    return studies, imgs


def _labels(studies, concepts_by_study, findings):
    y = np.zeros((len(studies), len(findings)), np.float32)
    mask = np.ones_like(y)
    for i, s in enumerate(studies):
        a = concepts_by_study.get(s.id, {})
        for j, c in enumerate(findings):
            v = a.get(c)
            if v == "present":
                y[i, j] = 1
            elif v == "uncertain":
                mask[i, j] = 0
    return y, mask


def train(settings: Any, *, docstore: Any = None, name: str = "default", epochs: int = 12, batch_size: int = 64,
          pooling: str = "lpa", lr: float = 1e-3, patience: int = 3, findings_weight: float = 1.0,
          progress: bool = True, max_train: int | None = None) -> TrainReport:
    import torch
    from tqdm import tqdm

    from kgrag.ingest.docstore import DocStore
    from kgrag.ontology import ids_with_role
    from kgrag.retrieval.cnn import ImageEncoder, TextProjection
    from kgrag.retrieval.encoders import SentenceTextEncoder
    from kgrag.retrieval.fusion import learn_weights, overlap_positives
    from kgrag.retrieval.losses import info_nce
    from kgrag.retrieval.model import RetrievalModel
    from kgrag.retrieval.reward import train_reward

    t0 = time.perf_counter()
    seed = settings.models.seed
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    own = docstore is None
    docstore = docstore or DocStore.from_settings(settings)
    try:
        tr, tr_img = _load(docstore, "train", progress)
        va, va_img = _load(docstore, "val", progress)
        if max_train:
            tr, tr_img = tr[:max_train], tr_img[:max_train]
        if len(tr) < 8:
            raise InputError(f"only {len(tr)} train studies with images", fix="ingest a corpus with images (kgrag synth, then kgrag ingest)")
        sc = {**docstore.study_concepts("train"), **docstore.study_concepts("val")}
    finally:
        if own:
            docstore.close()
    findings = ids_with_role("ImageFinding")
    y_tr, m_tr = _labels(tr, sc, findings)
    y_va, _ = _labels(va, sc, findings)
    enc = SentenceTextEncoder(settings.models.text_encoder)
    log.info("encoding %d reports with %s", len(tr) + len(va), enc.name)
    t_tr = enc.encode_texts([s.report for s in tr])
    t_va = enc.encode_texts([s.report for s in va]) if va else np.zeros((0, enc.dim), np.float32)

    dim = settings.models.embed_dim
    img_enc = ImageEncoder(dim, len(findings), pooling)
    txt_proj = TextProjection(enc.dim, dim)
    log_inv_t = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    params = list(img_enc.parameters()) + list(txt_proj.parameters()) + [log_inv_t]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    X = torch.tensor(tr_img, dtype=torch.uint8)
    T = torch.tensor(t_tr)
    Y, M = torch.tensor(y_tr), torch.tensor(m_tr)

    def to_input(xb: torch.Tensor, augment: bool) -> torch.Tensor:
        x = xb.float().div(255.0).unsqueeze(1)
        if augment:
            dy, dx = (int(v) for v in rng.integers(-4, 5, size=2))
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            x = x * float(rng.uniform(0.9, 1.1)) + float(rng.uniform(-0.05, 0.05))
        return x

    def embed_val() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        img_enc.eval()
        txt_proj.eval()
        with torch.no_grad():
            zi, lg = [], []
            for i in range(0, len(va_img), 256):
                z, logit = img_enc(to_input(torch.tensor(va_img[i : i + 256]), False))
                zi.append(z.numpy())
                lg.append(torch.sigmoid(logit).numpy())
            zt = txt_proj(torch.tensor(t_va)).numpy()
        return np.concatenate(zi), zt, np.concatenate(lg)

    rep = TrainReport(name=name, n_train=len(tr), n_val=len(va))
    best, best_state, bad = -1.0, None, 0
    bce = torch.nn.BCEWithLogitsLoss(reduction="none")
    for epoch in range(1, epochs + 1):
        img_enc.train()
        txt_proj.train()
        perm = torch.randperm(len(tr), generator=torch.Generator().manual_seed(seed + epoch))
        losses = []
        for i in tqdm(range(0, len(tr) - 1, batch_size), desc=f"epoch {epoch}", unit="batch", disable=not progress, leave=False):
            idx = perm[i : i + batch_size]
            if len(idx) < 2:
                continue
            zi, logits = img_enc(to_input(X[idx], True))
            zt = txt_proj(T[idx])
            loss = info_nce(zi, zt, log_inv_t)
            if logits is not None and findings_weight:
                loss = loss + findings_weight * (bce(logits, Y[idx]) * M[idx]).sum() / M[idx].sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        if len(va):
            zi, zt, _ = embed_val()
            r = recall_at(zi, zt)
            score = r["R@5"]
        else:
            r, score = {}, -float(np.mean(losses))
        rep.history.append({"epoch": epoch, "loss": float(np.mean(losses)), "temperature": float(torch.exp(-log_inv_t.detach())), **r})
        log.info("epoch %d loss %.4f %s", epoch, np.mean(losses), r)
        if progress:
            import sys

            print(f"epoch {epoch}: loss {np.mean(losses):.3f} val {r}", file=sys.stderr)
        if score > best:
            best, bad, rep.best_epoch = score, 0, epoch
            best_state = ({k: v.clone() for k, v in img_enc.state_dict().items()},
                          {k: v.clone() for k, v in txt_proj.state_dict().items()})
        else:
            bad += 1
            if bad >= patience:
                break
        rep.epochs_run = epoch
    rep.epochs_run = len(rep.history)
    img_enc.load_state_dict(best_state[0])
    txt_proj.load_state_dict(best_state[1])
    if len(va):
        zi, zt, probs = embed_val()
        rep.val_recall = recall_at(zi, zt)
        rep.chance_recall = {f"R@{k}": min(1.0, k / len(va)) for k in (1, 5, 10)}
        rep.findings_auc = {c: round(auc(y_va[:, j], probs[:, j]), 4) for j, c in enumerate(findings)}

    # -- fusion weights (MR-RAG), on train -------------------------------------------------
    model = RetrievalModel(img_enc, txt_proj, enc, findings, learn_weights(np.zeros((1, 2, 3)), np.array([[True, False]])))
    zi_tr = model.encode_images([tr_img[i].astype(np.float32) / 255.0 for i in range(len(tr))])
    zt_tr = model.project_text_embeddings(t_tr)
    sets = [{c for c, a in sc.get(s.id, {}).items() if a == "present" and c != "no_finding"} for s in tr]
    nq, nc = min(400, len(tr)), min(64, len(tr) - 1)
    q_idx = rng.choice(len(tr), size=nq, replace=False)
    sims = np.zeros((nq, nc, 3), np.float32)
    pos = np.zeros((nq, nc), bool)
    for a, qi in enumerate(q_idx):
        cands = rng.choice(np.delete(np.arange(len(tr)), qi), size=nc, replace=False)
        sims[a, :, 0] = zt_tr[cands] @ zi_tr[qi]
        sims[a, :, 1] = zi_tr[cands] @ zi_tr[qi]
        sims[a, :, 2] = zt_tr[cands] @ zt_tr[qi]
        pos[a] = overlap_positives([sets[qi]], [sets[c] for c in cands])[0]
    model.fusion = learn_weights(sims, pos, seed=seed)
    rep.fusion = model.fusion.to_dict()

    # -- reward model (RAG-PRM), pairs from concept overlap --------------------------------
    from kgrag.retrieval.fusion import jaccard

    qs, dp, dn = [], [], []
    for _ in range(min(6000, 4 * len(tr))):
        q, d1, d2 = rng.choice(len(tr), size=3, replace=False)
        j1, j2 = jaccard(sets[q], sets[d1]), jaccard(sets[q], sets[d2])
        if j1 == j2:
            continue
        better, worse = (d1, d2) if j1 > j2 else (d2, d1)
        qs.append(zi_tr[q])
        dp.append(zt_tr[better])
        dn.append(zt_tr[worse])
    reward, acc = train_reward(np.array(qs), np.array(dp), np.array(dn), dim=dim, seed=seed)
    model.reward_model = reward
    rep.reward_pair_accuracy = acc
    rep.seconds = time.perf_counter() - t0
    model.manifest = {
        "format": "kgrag.retrieval_model.v1", "name": name, "embed_dim": dim, "pooling": pooling, "width": 32,
        "text_encoder": settings.models.text_encoder, "text_dim": enc.dim, "image_size": 128, "metric": "cosine",
        "seed": seed, "epochs": epochs, "batch_size": batch_size, "lr": lr, "temperature": float(torch.exp(-log_inv_t.detach())),
        "n_train": len(tr), "n_val": len(va), "metrics": {"val_recall": rep.val_recall, "chance": rep.chance_recall,
                                                         "findings_auc": rep.findings_auc, "reward_pair_accuracy": acc},
        "train_seconds": rep.seconds, "splits_used": ["train", "val"],
    }
    out = settings.models_dir / name
    model.save(out)
    rep.path = str(out)
    return rep

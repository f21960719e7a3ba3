"""Dataset helpers for training: loading a split's image–report pairs, findings
labels from extracted mentions, concept sets, overlap pairs, the query forms
users send (image, question, findings text) and augmentation.

No torchvision: resizing uses Pillow, augmentation is written in torch.

Leakage guard: :func:`load_split` and :func:`split_concepts` refuse the ``test``
split, so nothing fitted here can see a study that is later used to answer a query.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kgrag.errors import InputError
from kgrag.imaging import IMAGE_SIZE

TRAINABLE_SPLITS = ("train", "val")
# Augmentation: each image is shifted by up to MAX_SHIFT pixels (zero fill) and its
# intensity scaled by a factor in [1 - CONTRAST, 1 + CONTRAST] plus an offset in
# [-BRIGHTNESS, BRIGHTNESS], then clipped to [0, 1].
MAX_SHIFT = 4
CONTRAST = 0.3
BRIGHTNESS = 0.15
# Acquisition augmentation (:func:`acquisition`), after it: a zoom in [1 - SCALE, 1 + SCALE]
# with its height stretched by up to ±ASPECT (border fill), a gamma curve exp(u·GAMMA)
# with u uniform in [-1, 1], a [1 4 6 4 1] binomial blur with probability BLUR_P, and
# Gaussian noise of a standard deviation drawn in [0, NOISE].  Films from another
# scanner differ in exactly these; trained without them the findings head read a second
# renderer at chance (benchmarks/bench_causal_shift.py; docs/retrieval.md).
SCALE = 0.12
ASPECT = 0.10
GAMMA = 0.5
BLUR_P = 0.5
NOISE = 0.04
#: roles the findings head predicts: every concept an image can show (V_I), i.e. every
#: non-diagnosis concept.  The roles give the graph its layers; they do not limit V_I.
HEAD_ROLES = ("ImageFinding", "Finding")
UNMENTIONED = ("absent", "masked")


def head_concepts() -> list[str]:
    """The findings head's columns: image findings and findings, in catalogue order."""
    from kgrag.ontology import concepts

    return [c.id for c in concepts().values() if c.role in HEAD_ROLES]


def _guard(split: str) -> None:
    if split not in TRAINABLE_SPLITS:
        raise InputError(f"split {split!r} cannot feed training (only {TRAINABLE_SPLITS})",
                         fix="test studies are held out; train on train, stop early on val")


@dataclass
class SplitData:
    """Studies of one split with the first image as uint8 (``images`` is empty, shape
    (0, size, size), when the split was loaded without images)."""

    split: str
    studies: list[Any]
    images: np.ndarray  # (n, size, size) uint8

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.studies]

    @property
    def reports(self) -> list[str]:
        return [s.report for s in self.studies]

    @property
    def findings_texts(self) -> list[str]:
        """What a user sends as ``--findings``: the findings section, else the report."""
        return [getattr(s, "findings", None) or s.report for s in self.studies]

    def __len__(self) -> int:
        return len(self.studies)


def load_split(docstore: Any, split: str, *, size: int = IMAGE_SIZE, progress: bool = False,
               limit: int | None = None, images: bool = True) -> SplitData:
    """Read ``split`` (train or val) from the docstore.  With ``images`` (the default)
    studies without an image are skipped and the first image of each is loaded; with
    ``images=False`` every study is kept and no pixel is read (text-only training)."""
    from tqdm import tqdm

    from kgrag.imaging import load_image

    _guard(split)
    studies = [s for s in docstore.studies(split=split) if s.images or not images]
    if limit is not None:
        studies = studies[:limit]
    if not images:
        return SplitData(split, studies, np.zeros((0, size, size), np.uint8))
    imgs = np.zeros((len(studies), size, size), np.uint8)
    for i, s in enumerate(tqdm(studies, desc=f"load {split}", unit="img", disable=not progress)):
        imgs[i] = np.round(np.clip(load_image(s.images[0], size=size), 0.0, 1.0) * 255).astype(np.uint8)
    return SplitData(split, studies, imgs)


def split_concepts(docstore: Any, splits: Iterable[str] = TRAINABLE_SPLITS) -> dict[str, dict[str, str]]:
    """study id → concept → assertion (present/uncertain/absent) for the given splits."""
    splits = list(splits)
    for sp in splits:
        _guard(sp)
    out: dict[str, dict[str, str]] = {}
    for sp in splits:
        out.update(docstore.study_concepts(split=sp))
    return out


def finding_labels(ids: Sequence[str], concepts_by_study: Mapping[str, Mapping[str, str]],
                   findings: Sequence[str], *, unmentioned: str = "absent") -> tuple[np.ndarray, np.ndarray]:
    """Multi-label targets and mask for the findings head.

    present → 1; absent (a negated mention) → 0; uncertain (hedged) → masked out of
    the loss.  Not mentioned: ``unmentioned="absent"`` → 0 (a report that does not
    mention a visible finding is read as not showing it, the usual radiology
    convention and the CheXpert labeller's "blank"); ``"masked"`` → left out of the
    loss, so only stated findings teach the head.  The default was chosen by
    measurement (docs/retrieval.md).
    """
    if unmentioned not in UNMENTIONED:
        raise InputError(f"unmentioned={unmentioned!r} is not one of {UNMENTIONED}",
                         fix="set KGRAG_MODELS__UNMENTIONED_AS to absent or masked")
    y = np.zeros((len(ids), len(findings)), np.float32)
    mask = np.ones_like(y) if unmentioned == "absent" else np.zeros_like(y)
    col = {c: j for j, c in enumerate(findings)}
    for i, sid in enumerate(ids):
        for c, a in concepts_by_study.get(sid, {}).items():
            j = col.get(c)
            if j is None:
                continue
            if a == "present":
                y[i, j], mask[i, j] = 1.0, 1.0
            elif a == "absent":
                mask[i, j] = 1.0
            elif a == "uncertain":
                mask[i, j] = 0.0
    return y, mask


def present_sets(ids: Sequence[str], concepts_by_study: Mapping[str, Mapping[str, str]]) -> list[set[str]]:
    """Present-concept set per study (``no_finding`` left out: a normal study has the empty set)."""
    return [{c for c, a in concepts_by_study.get(sid, {}).items() if a == "present" and c != "no_finding"} for sid in ids]


def overlap_pairs(query_sets: Sequence[set[str]], doc_sets: Sequence[set[str]], n: int, rng: np.random.Generator,
                  *, same_pool: bool = False) -> np.ndarray:
    """Up to ``n`` (query, better, worse) index triples where ``better`` has a strictly
    higher Jaccard overlap of present concepts with the query than ``worse``.
    With ``same_pool`` the query index is never one of its documents."""
    from kgrag.model.fusion import jaccard

    out = []
    nq, nd = len(query_sets), len(doc_sets)
    if nq == 0 or nd < 2:
        return np.zeros((0, 3), np.int64)
    for _ in range(n):
        q = int(rng.integers(nq))
        d1, d2 = (int(v) for v in rng.choice(nd, size=2, replace=False))
        if same_pool and q in (d1, d2):
            continue
        j1, j2 = jaccard(query_sets[q], doc_sets[d1]), jaccard(query_sets[q], doc_sets[d2])
        if j1 == j2:
            continue
        out.append((q, d1, d2) if j1 > j2 else (q, d2, d1))
    return np.asarray(out, np.int64).reshape(-1, 3)


def question_for(concept: str) -> str:
    """A yes/no question about ``concept`` phrased the way manifests phrase them:
    the synthetic corpus's wording where it has one ("Is the heart enlarged?"),
    else "Is there <name>?" from the catalogue name."""
    from kgrag.ontology import concepts
    from kgrag.synth.generate import QUESTION_TEMPLATES

    if concept in QUESTION_TEMPLATES:
        return QUESTION_TEMPLATES[concept]
    c = concepts().get(concept)
    name = (c.name if c else concept.replace("_", " ")).lower()
    return f"Is there {name}?"


def query_questions(sets: Sequence[set[str]], vocabulary: Sequence[str], rng: np.random.Generator) -> list[str]:
    """One generated question per study: half the time about a concept the study
    has (drawn from its present set), else about one it lacks (drawn from
    ``vocabulary`` minus the set) — users ask about what they suspect, which is not
    always there.  A study with nothing present always gets a concept it lacks."""
    vocab = list(vocabulary)
    out = []
    for s in sets:
        have = sorted(c for c in s if c in vocab)
        lack = [c for c in vocab if c not in s]
        if have and (not lack or rng.random() < 0.5):
            c = have[int(rng.integers(len(have)))]
        else:
            c = lack[int(rng.integers(len(lack)))] if lack else vocab[0]
        out.append(question_for(c))
    return out


def to_float(x_uint8: Any) -> Any:
    """uint8 (n, H, W) tensor → float (n, 1, H, W) in [0, 1]."""
    return x_uint8.float().div(255.0).unsqueeze(1)


def augment(x: Any, generator: Any, max_shift: int = MAX_SHIFT, contrast: float = CONTRAST,
            brightness: float = BRIGHTNESS) -> Any:
    """Per-image random shift (zero fill) and intensity jitter of a (n, 1, H, W) batch."""
    import torch
    from torch.nn import functional as F

    n, _, h, w = x.shape
    if max_shift > 0:
        p = max_shift
        padded = F.pad(x, (p, p, p, p))
        off = torch.randint(0, 2 * p + 1, (n, 2), generator=generator)
        rows = (off[:, 0:1] + torch.arange(h)).view(n, 1, h, 1).expand(n, 1, h, w + 2 * p)
        x = padded.gather(2, rows)
        cols = (off[:, 1:2] + torch.arange(w)).view(n, 1, 1, w).expand(n, 1, h, w)
        x = x.gather(3, cols)
    scale = 1.0 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * contrast
    shift = (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * brightness
    return (x * scale + shift).clamp(0.0, 1.0)


def acquisition(x: Any, generator: Any, *, scale: float = SCALE, aspect: float = ASPECT, gamma: float = GAMMA,
                blur_p: float = BLUR_P, noise: float = NOISE) -> Any:
    """Per-image zoom and stretch, gamma, blur and noise of a (n, 1, H, W) batch in [0, 1]
    (all zero: the batch unchanged)."""
    import torch
    from torch.nn import functional as F

    n = x.shape[0]

    def u() -> Any:  # uniform in [-1, 1], one per image
        return torch.rand(n, generator=generator) * 2 - 1

    if scale > 0 or aspect > 0:
        zoom = 1.0 + u() * scale
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = zoom
        theta[:, 1, 1] = zoom * (1.0 + u() * aspect)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if gamma > 0:
        x = x.clamp(1e-4, 1.0) ** torch.exp(u() * gamma).view(n, 1, 1, 1)
    if blur_p > 0:
        k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
        b = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5))
        b = F.conv2d(F.pad(b, (0, 0, 2, 2), mode="replicate"), k.view(1, 1, 5, 1))
        on = (torch.rand(n, generator=generator) < blur_p).float().view(n, 1, 1, 1)
        x = on * b + (1 - on) * x
    if noise > 0:
        sd = torch.rand(n, generator=generator).view(n, 1, 1, 1) * noise
        x = x + torch.randn(x.shape, generator=generator) * sd
    return x.clamp(0.0, 1.0)


#: clip of the balancing weights (a group with almost no positives of a finding must not dominate)
MAX_BALANCE_WEIGHT = 10.0


def balance_weights(groups: Sequence[Any], y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-label weights w = P(y) / P(y | group) for the findings head's loss.

    Weighted, each finding's label is independent of the group (site, scanner): the
    backdoor adjustment of a confounder the training set carries, so the head cannot
    learn the group's marks as a sign of the finding.  P(y = 1 | g) is estimated over
    the labelled (unmasked) studies of group g with add-one smoothing, P(y = 1) over
    all of them the same way; weights are clipped to [1/MAX, MAX].  One group: all 1."""
    y, mask = np.asarray(y, np.float64), np.asarray(mask, np.float64)
    w = np.ones_like(y)
    keys = [None if g is None else str(g) for g in groups]
    names = sorted(set(keys), key=lambda g: (g is None, g or ""))
    if len(names) < 2:
        return w.astype(np.float32)
    pos_all = ((y * mask).sum(0) + 1.0) / (mask.sum(0) + 2.0)
    for g in names:
        rows = np.array([k == g for k in keys])
        m = mask[rows]
        pos_g = ((y[rows] * m).sum(0) + 1.0) / (m.sum(0) + 2.0)
        w1, w0 = pos_all / pos_g, (1.0 - pos_all) / (1.0 - pos_g)
        w[rows] = np.where(y[rows] > 0.5, w1, w0)
    return np.clip(w, 1.0 / MAX_BALANCE_WEIGHT, MAX_BALANCE_WEIGHT).astype(np.float32)

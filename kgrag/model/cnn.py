"""A small CNN image encoder in plain torch (no torchvision) with GAP, LPA or MSPP pooling.

Input 1×128×128 (grayscale in [0, 1]).  With ``standardize`` (the default) each image
is first brought to zero mean and unit standard deviation, so the network sees the
contrast of the film, not its exposure or its detector's gain.  Backbone (``w`` = ``width``):

    block  conv3×3/2 (1→w)   → conv3×3 (w→w)            128² → 64²
    block  conv3×3/2 (w→2w)  → conv3×3 (2w→2w)          64² → 32²
    block  conv3×3/2 (2w→4w) → conv3×3 (4w→4w)          32² → 16²
    block  conv3×3/2 (4w→4w) → conv3×3 (4w→4w)          16² → 8²

each conv followed by BatchNorm and ReLU.  Then the
pooling turns the 4w×8×8 map into a vector: ``gap`` (global average), ``lpa``
(local patch attention, MMedRAG++: a learned 1×1 conv scores each position, the
softmax over the 64 positions weights the average) or ``mspp`` (multi-scale
pyramid pooling: average pools at 1×1, 2×2 and 4×4 concatenated, 21·4w values).
A two-layer projection head maps the pooled vector into the shared
``embed_dim`` space (L2-normalized); a linear multi-label head over the same
pooled vector gives image-finding logits.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

POOLINGS = ("gap", "lpa", "mspp")


class LPA(nn.Module):
    """Local patch attention pooling: softmax over positions of a learned 1×1-conv score."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.score = nn.Conv2d(channels, 1, kernel_size=1)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """(b, 1, h, w) attention weights; each map sums to 1."""
        b, _, h, w = x.shape
        return torch.softmax(self.score(x).view(b, h * w), dim=1).view(b, 1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weights(x)).sum(dim=(2, 3))


class MSPP(nn.Module):
    """Multi-scale pyramid pooling: average pools at 1×1, 2×2 and 4×4, concatenated."""

    levels = (1, 2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.adaptive_avg_pool2d(x, k).flatten(1) for k in self.levels], dim=1)


def standardize_images(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Each image of a (n, 1, H, W) batch to zero mean and unit standard deviation."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True)
    return (x - mean) / (std + eps)


def _conv(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(*_conv(cin, cout, 2), *_conv(cout, cout))


class ImageEncoder(nn.Module):
    """1×128×128 → pooled features → (L2-normalized embedding, findings logits or None)."""

    def __init__(self, embed_dim: int = 256, n_findings: int = 0, pooling: str = "lpa", width: int = 32,
                 standardize: bool = True) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.standardize = standardize
        self.embed_dim = embed_dim
        self.width = width
        c = 4 * width
        self.backbone = nn.Sequential(_block(1, width), _block(width, 2 * width), _block(2 * width, c), _block(c, c))
        self.pool: nn.Module = {"gap": nn.AdaptiveAvgPool2d(1), "lpa": LPA(c), "mspp": MSPP()}[pooling]
        self.feat_dim = c * (sum(k * k for k in MSPP.levels) if pooling == "mspp" else 1)
        self.proj = nn.Sequential(nn.Linear(self.feat_dim, 512), nn.ReLU(inplace=True), nn.Linear(512, embed_dim))
        self.findings = nn.Linear(self.feat_dim, n_findings) if n_findings else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.standardize:
            x = standardize_images(x)
        return self.pool(self.backbone(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        f = self.features(x)
        z = F.normalize(self.proj(f), dim=-1)
        logits = self.findings(f) if self.findings is not None else None
        return z, logits


class TextProjection(nn.Module):
    """Frozen sentence embedding (e.g. 384-d MiniLM) → shared space (L2-normalized)."""

    def __init__(self, in_dim: int = 384, embed_dim: int = 256) -> None:
        super().__init__()
        self.in_dim, self.embed_dim = in_dim, embed_dim
        self.net = nn.Sequential(nn.Linear(in_dim, 512), nn.ReLU(inplace=True), nn.Linear(512, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=-1)

"""A small CNN image encoder in plain torch (no torchvision) with GAP, LPA or MSPP pooling."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

POOLINGS = ("gap", "lpa", "mspp")


class LPA(nn.Module):
    """Local patch attention pooling (MMedRAG++): a learned 1×1 conv scores each
    spatial position; features are averaged with the softmax of those scores."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.score = nn.Conv2d(channels, 1, kernel_size=1)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return torch.softmax(self.score(x).view(b, h * w), dim=1).view(b, 1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weights(x)).sum(dim=(2, 3))


class MSPP(nn.Module):
    """Multi-scale pyramid pooling: average pools at 1×1, 2×2 and 4×4, concatenated."""

    levels = (1, 2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.adaptive_avg_pool2d(x, k).flatten(1) for k in self.levels], dim=1)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class ImageEncoder(nn.Module):
    """1×128×128 → pooled features → projection into the shared space (L2-normalized),
    plus a multi-label head over image-finding concepts."""

    def __init__(self, embed_dim: int = 256, n_findings: int = 0, pooling: str = "lpa", width: int = 32) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}")
        self.pooling = pooling
        c = [width, width * 2, width * 4, width * 4]
        self.backbone = nn.Sequential(_block(1, c[0]), _block(c[0], c[1]), _block(c[1], c[2]), _block(c[2], c[3]))
        self.pool: nn.Module = {"gap": nn.AdaptiveAvgPool2d(1), "lpa": LPA(c[3]), "mspp": MSPP()}[pooling]
        feat = c[3] * (21 if pooling == "mspp" else 1)
        self.feat_dim = feat
        self.proj = nn.Sequential(nn.Linear(feat, 512), nn.ReLU(inplace=True), nn.Linear(512, embed_dim))
        self.findings = nn.Linear(feat, n_findings) if n_findings else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
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
        self.net = nn.Sequential(nn.Linear(in_dim, 512), nn.ReLU(inplace=True), nn.Linear(512, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=-1)

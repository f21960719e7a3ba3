"""128×128 grayscale chest phantoms whose visual signs follow the image findings."""

from __future__ import annotations

import numpy as np

SIZE = 128
#: the image findings this renderer draws
DRAWN = ("lung_opacity", "enlarged_cardiomediastinum", "costophrenic_blunting", "pleural_line", "interstitial_markings",
         "hyperinflation", "nodule", "mass", "support_devices")
_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)

# lung zones (centre y, centre x offset from midline as a fraction of the lung width)
ZONES = {
    "right upper lobe": (0.33, -1), "right middle lobe": (0.52, -1), "right lower lobe": (0.68, -1),
    "left upper lobe": (0.33, 1), "left lower lobe": (0.66, 1), "lingula": (0.52, 1),
}


def _ellipse(cy, cx, ry, rx):
    return ((_YY - cy) / ry) ** 2 + ((_XX - cx) / rx) ** 2 <= 1.0


def _blob(cy, cx, r):
    return np.exp(-(((_YY - cy) ** 2 + (_XX - cx) ** 2) / (2.0 * r * r)))


def draw(state: dict[str, int], site: str, rng: np.random.Generator, zone: str | None = None) -> np.ndarray:
    """Render one phantom; returns float32 (128, 128) in [0, 1]."""
    s = SIZE
    scale = 1.0 + rng.uniform(-0.06, 0.06)
    dy, dx = rng.uniform(-4, 4, size=2)
    cx = s / 2 + dx
    img = np.full((s, s), 0.08, np.float32)
    # body
    img[_ellipse(s * 0.55 + dy, cx, s * 0.46 * scale, s * 0.44 * scale)] = 0.42
    # lungs (dark); hyperinflation makes them taller with flat bases
    tall = 1.18 if state.get("hyperinflation") else 1.0
    lung_ry = s * 0.27 * scale * tall
    lung_rx = s * 0.14 * scale
    lung_cy = s * 0.50 + dy + (lung_ry - s * 0.27 * scale) * 0.5
    sep = s * 0.17 * scale
    left = _ellipse(lung_cy, cx + sep, lung_ry, lung_rx)
    right = _ellipse(lung_cy, cx - sep, lung_ry, lung_rx)
    lungs = left | right
    img[lungs] = 0.16
    # normal vascular markings
    markings = 0.03 * np.sin(_XX * 0.9 + rng.uniform(0, 6)) * np.sin(_YY * 0.7 + rng.uniform(0, 6))
    img += np.where(lungs, markings, 0).astype(np.float32)
    # heart: width follows enlarged cardiomediastinum
    heart_rx = s * (0.20 if state.get("enlarged_cardiomediastinum") else 0.13) * scale
    heart = _ellipse(s * 0.66 + dy, cx + s * 0.03, s * 0.13 * scale, heart_rx)
    img[heart] = 0.72
    # mediastinum
    img[(np.abs(_XX - cx) < s * 0.05 * scale) & (_YY > s * 0.18 + dy) & (_YY < s * 0.6 + dy)] = 0.62
    base_y = lung_cy + lung_ry
    if state.get("lung_opacity"):
        fy, side = ZONES[zone or "right lower lobe"]
        oy = lung_cy - lung_ry + 2 * lung_ry * fy
        ox = cx + side * sep + rng.uniform(-3, 3)
        img += (0.38 * _blob(oy, ox, s * 0.07 * rng.uniform(0.8, 1.3)) * lungs).astype(np.float32)
    if state.get("costophrenic_blunting"):
        for side in rng.choice([-1, 1], size=rng.integers(1, 3), replace=False):
            lx = cx + side * (sep + lung_rx * 0.55)
            fluid = lungs & (_YY > base_y - s * 0.12 - 0.5 * np.abs(_XX - lx)) & (np.abs(_XX - lx) < lung_rx)
            img[fluid] = 0.58
    if state.get("pleural_line"):
        side = rng.choice([-1, 1])
        lx = cx + side * (sep + lung_rx * 0.55)
        outside = lungs & (side * (_XX - lx) > 0)
        img[outside] = 0.05  # no lung markings lateral to the line
        line = lungs & (np.abs(_XX - lx) < 0.8)
        img[line] = 0.75
    if state.get("interstitial_markings"):
        tex = (np.sin(_XX * 2.1 + _YY * 0.9 + rng.uniform(0, 6)) > 0.75) | (np.sin(_XX * 0.8 - _YY * 2.3 + rng.uniform(0, 6)) > 0.8)
        img += np.where(lungs & tex, 0.14, 0).astype(np.float32)
    if state.get("nodule"):
        side = rng.choice([-1, 1])
        img += (0.45 * _blob(lung_cy + rng.uniform(-0.5, 0.5) * lung_ry, cx + side * sep + rng.uniform(-4, 4), 2.0) * lungs).astype(np.float32)
    if state.get("mass"):
        side = rng.choice([-1, 1])
        img += (0.5 * _blob(lung_cy + rng.uniform(-0.4, 0.2) * lung_ry, cx + side * sep, 5.5) * lungs).astype(np.float32)
    if state.get("support_devices"):
        tx = cx + rng.uniform(-3, 3)
        tube = (np.abs(_XX - tx - 0.08 * (_YY - s * 0.1)) < 0.9) & (_YY > s * 0.05) & (_YY < s * 0.6)
        img[tube] = 0.95
    if site == "B":
        img[3:9, 3:9] = 0.98  # the site's marker
        img = img * 0.92 + 0.05
    # acquisition noise, contrast and brightness
    img = img * rng.uniform(0.85, 1.15) + rng.uniform(-0.06, 0.06)
    img += rng.normal(0, 0.035, size=img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def to_png_bytes(img: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((img * 255.0 + 0.5).astype(np.uint8), mode="L").save(buf, format="PNG", optimize=False)
    return buf.getvalue()

"""Style b renderer: a second, independently drawn 128×128 chest phantom.

It draws the same image findings as style a (:mod:`kgrag.synth.phantom`) so every
concept stays visible, but with its own geometry, intensities, texture and
acquisition: tapered lungs with domed hemidiaphragms and sharp costophrenic
angles, posterior ribs, a spine, a heart offset to the patient's left, a
fluid meniscus, a reticular net for interstitial markings, lobulated masses,
several device kinds; then a gamma curve, a Gaussian blur, a heel-effect
gradient, signal-dependent noise and low-frequency mottle, a laterality marker
on every film and a burned-in label box on site B films.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from kgrag.synth import phantom
from kgrag.synth.reports_b import LOCATIONS, StudyLayout, bilateral

SIZE = 128
_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)

#: the image findings this renderer draws: the same set as style a
DRAWN = phantom.DRAWN


@lru_cache(maxsize=8)
def _blur_matrix(sigma: float) -> np.ndarray:
    x = np.arange(SIZE, dtype=np.float32)
    k = np.exp(-((x[:, None] - x[None, :]) ** 2) / (2.0 * sigma * sigma))
    return (k / k.sum(axis=1, keepdims=True)).astype(np.float32)


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (edges renormalised), as two matrix products."""
    k = _blur_matrix(round(float(sigma), 2))
    return (k @ img @ k.T).astype(np.float32)


def _field(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """A smooth random field with unit standard deviation."""
    f = blur(rng.normal(size=(SIZE, SIZE)).astype(np.float32), sigma)
    return (f - f.mean()) / (f.std() + 1e-6)


def _disk(cy: float, cx: float, r: float) -> np.ndarray:
    return (_YY - cy) ** 2 + (_XX - cx) ** 2 <= r * r


class _Lung:
    """One tapered lung: narrow apex, widening downwards, a domed base."""

    def __init__(self, side: int, cx: float, top: float, height: float, half_w: float, sep: float, dome: float):
        self.side, self.top, self.height, self.half_w, self.dome = side, top, height, half_w, dome
        self.lx = cx + side * sep
        u = np.clip((_YY - top) / height, 0.0, 1.0)
        self.width = half_w * (0.30 + 0.70 * np.sqrt(u))
        rel = np.clip((_XX - self.lx) / half_w, -1.0, 1.0)
        self.base = top + height - dome * (1.0 - rel * rel)  # the hemidiaphragm: highest mid-lung
        self.mask = (np.abs(_XX - self.lx) <= self.width) & (_YY >= top) & (_YY <= self.base)

    def point(self, fy: float, fx: float) -> tuple[float, float]:
        """(y, x) at a fraction of the height from the apex and of the half-width from medial."""
        y = self.top + fy * self.height
        w = self.half_w * (0.30 + 0.70 * np.sqrt(fy))
        return y, self.lx + self.side * (-1.0 + 2.0 * fx) * w * 0.8

    @property
    def lateral_x(self) -> float:
        return self.lx + self.side * self.half_w


def draw(state: dict[str, int], site: str, lay: StudyLayout, rng: np.random.Generator) -> np.ndarray:
    """Render one style b phantom; returns float32 (128, 128) in [0, 1].

    Geometry, each finding and the acquisition draw from their own child generators
    (common random numbers): the same ``rng`` seed with one more finding gives the same
    film plus that finding, so the difference of two films is the finding's sign."""
    s = SIZE
    r = dict(zip(("geometry", "acquisition", *DRAWN), rng.spawn(len(DRAWN) + 2), strict=True))
    scale = 1.0 + r["geometry"].uniform(-0.08, 0.08)
    dy, dx = r["geometry"].uniform(-5, 5, size=2)
    cx = s / 2 + dx
    img = np.full((s, s), 0.02, np.float32)
    # body: a rounded rectangle (superellipse) of soft tissue
    body = (np.abs((_YY - s * 0.56 - dy) / (s * 0.47 * scale)) ** 4 + np.abs((_XX - cx) / (s * 0.45 * scale)) ** 4) <= 1.0
    img[body] = 0.55
    infl = bool(state.get("hyperinflation"))
    height = s * 0.56 * scale * (1.18 if infl else 1.0)
    top = s * 0.12 + dy - (height - s * 0.56 * scale) * 0.35
    lungs = [_Lung(side, cx, top, height, s * 0.165 * scale, s * 0.19 * scale, 0.0 if infl else s * 0.07 * scale)
             for side in (-1, 1)]
    lung = lungs[0].mask | lungs[1].mask
    img[lung] = 0.19 if infl else 0.24
    # posterior ribs: curved bands across each lung
    ribs = np.zeros((s, s), bool)
    spacing = height / 8.5
    for lg in lungs:
        for k in range(9):
            y0 = lg.top + (k + 0.4) * spacing
            yk = y0 + 0.9 * ((_XX - lg.lx) / lg.half_w) ** 2 * spacing * lg.side * np.sign(_XX - lg.lx + 1e-6)
            ribs |= lg.mask & (np.abs(_YY - yk) < spacing * 0.22)
    img[ribs] += 0.07
    # spine, then the heart (offset to the patient's left = image right) and the mediastinum
    spine = (np.abs(_XX - cx) < s * 0.045 * scale) & body
    img[spine] = 0.70
    hw = s * (0.21 if state.get("enlarged_cardiomediastinum") else 0.135) * scale
    hcy = lungs[0].top + height * 0.74
    heart = (((_YY - hcy) / (s * 0.12 * scale)) ** 2 + ((_XX - cx - s * 0.045) / hw) ** 2) <= 1.0
    heart &= _YY > hcy - s * 0.16 * scale
    img[heart] = 0.80
    med = (np.abs(_XX - cx - 0.02 * (_YY - top)) < s * (0.060 + 0.015 * np.clip((hcy - _YY) / s, 0, 1)) * scale) \
        & (_YY > top - s * 0.06) & (_YY < hcy)
    img[med] = np.maximum(img[med], 0.74)
    side_of = {"right": 0, "left": 1}
    fy, sd, fx, _, _ = LOCATIONS[lay.location]  # where the report places focal findings
    focal = lungs[0 if sd < 0 else 1]
    if state.get("lung_opacity"):
        oy, ox = focal.point(fy, fx)
        patch = np.exp(-(((_YY - oy) / (s * 0.085)) ** 2 + ((_XX - ox) / (s * 0.065)) ** 2))
        patch *= np.clip(0.75 + 0.30 * _field(r["lung_opacity"], 3.0), 0.35, 1.3)  # mottled, never missing
        img += (0.46 * patch * lung).astype(np.float32)
    if state.get("costophrenic_blunting"):
        for lg in (lungs if bilateral(state, lay) else [lungs[side_of[lay.side]]]):
            # a meniscus: the fluid surface climbs towards the lateral chest wall
            t = np.clip(lg.side * (_XX - lg.lx) / lg.half_w, 0.0, 1.0)
            surface = lg.top + lg.height * 0.80 - lg.height * 0.14 * t * t
            fluid = lg.mask & (_YY > surface) & (lg.side * (_XX - lg.lx) > -0.2 * lg.half_w)
            img[fluid] = 0.60
    if state.get("pleural_line"):
        lg = lungs[side_of[lay.side]]
        offset = lg.half_w * 0.22
        edge = lg.lx + lg.side * (lg.width - offset)
        apex = lg.mask & (_YY < lg.top + lg.height * 0.45)
        img[apex & (lg.side * (_XX - edge) > 0)] = 0.08  # collapsed lung edge, no markings beyond it
        img[apex & (np.abs(_XX - edge) < 0.9)] = 0.68
    if state.get("interstitial_markings"):
        f = _field(r["interstitial_markings"], 1.8)
        net = np.abs(f) < 0.30  # the zero set of a smooth field: a reticular net
        weight = np.clip((_YY - top) / height, 0.35, 1.0)  # basal predominance
        img += np.where(lung & ~heart & net, 0.26 * weight, 0).astype(np.float32)
    if state.get("nodule"):
        g = r["nodule"]
        ny, nx = focal.point(float(np.clip(fy + g.uniform(-0.08, 0.08), 0.1, 0.9)), float(np.clip(fx + g.uniform(-0.2, 0.2), 0.1, 0.9)))
        img[_disk(ny, nx, g.uniform(2.2, 3.2)) & lung] += 0.40
    if state.get("mass"):
        g = r["mass"]
        my, mx = focal.point(float(np.clip(fy + g.uniform(-0.08, 0.08), 0.15, 0.8)), float(np.clip(fx, 0.25, 0.75)))
        m = np.zeros((s, s), bool)
        for _ in range(3):
            m |= _disk(my + g.uniform(-3, 3), mx + g.uniform(-3, 3), g.uniform(4.0, 6.5))
        img[m & body] = np.maximum(img[m & body], 0.70)
    if state.get("support_devices"):
        kind = int(r["support_devices"].integers(3))
        if kind == 0:  # endotracheal tube: a double line in the trachea
            for off in (-1.2, 1.2):
                img[(np.abs(_XX - cx - off) < 0.6) & (_YY > 2) & (_YY < top + s * 0.10)] = 0.97
        elif kind == 1:  # central line from the image-left shoulder towards the heart
            yc = top + s * 0.02 + ((_XX - (cx - s * 0.30)) / (s * 0.28)) ** 2 * s * 0.18
            img[(np.abs(_YY - yc) < 0.8) & (_XX > cx - s * 0.32) & (_XX < cx + 2)] = 0.97
        else:  # pacemaker generator over the image-right upper chest, a lead to the heart
            img[(np.abs(_YY - top - s * 0.02) < 4) & (np.abs(_XX - cx - s * 0.30) < 6)] = 1.0
            yl = np.linspace(top, hcy, 60)
            xl = np.linspace(cx + s * 0.30, cx + s * 0.05, 60)
            for yy, xx in zip(yl, xl, strict=True):
                img[int(np.clip(yy, 0, s - 1)), int(np.clip(xx, 0, s - 1))] = 0.97
    # acquisition: gamma, blur, heel effect, mottle, signal-dependent noise
    acq = r["acquisition"]
    img = np.clip(img, 0.0, 1.0) ** acq.uniform(0.75, 0.95)
    img = blur(img, acq.uniform(0.9, 1.5))
    img = img * (1.0 + 0.12 * (_YY / s - 0.5)) * acq.uniform(0.9, 1.1)
    img = img + 0.025 * _field(acq, 8.0)
    img = img + acq.normal(size=img.shape).astype(np.float32) * (0.012 + 0.03 * np.sqrt(np.clip(img, 0, 1)))
    # burned-in markers, after blur: sharp as on a real film
    mx0 = int(s - 14 + acq.integers(-2, 2))  # laterality "L" on every film, top right
    img[6:14, mx0:mx0 + 2] = 1.0
    img[12:14, mx0:mx0 + 6] = 1.0
    if site == "B":  # the site's label box, bottom left
        img[s - 12:s - 4, 4:26] = 0.0
        img[s - 12, 4:26] = img[s - 5, 4:26] = 1.0
        img[s - 12:s - 4, 4] = img[s - 12:s - 4, 25] = 1.0
        img[s - 9:s - 7, 7:12] = img[s - 9:s - 7, 14:22] = 1.0
    return np.clip(img, 0.0, 1.0).astype(np.float32)

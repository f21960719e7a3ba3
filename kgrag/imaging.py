"""Image loading: PNG/JPEG via Pillow, DICOM via pydicom; normalized grayscale float32.

Images are checked against a pixel cap (width x height, default 40 MP,
``KGRAG_INGEST__MAX_IMAGE_PIXELS`` at ingest) from the header, before anything is
decoded: a small, highly compressed file can otherwise decode to gigabytes.  A JPEG
loaded at a target size is decoded at a reduced scale (``Image.draft``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kgrag.errors import InputError

# Side of the square grayscale input every image model sees (pixels).
IMAGE_SIZE = 128
#: default cap on width x height; ``KGRAG_INGEST__MAX_IMAGE_PIXELS`` sets it at ingest
DEFAULT_MAX_PIXELS = 40_000_000
DICOM_SUFFIXES = {".dcm", ".dicom"}
RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def _is_dicom(p: Path) -> bool:
    if p.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(p, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _check_pixels(p: Path, width: int, height: int, max_pixels: int | None, frames: int = 1) -> None:
    cap = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    n = int(width) * int(height) * max(int(frames), 1)
    if n > cap:
        raise InputError(f"image {p} is {width}x{height}" + (f"x{frames}" if frames > 1 else "")
                         + f" = {n / 1e6:.1f} MP, over the limit of {cap / 1e6:g} MP; it was not decoded",
                         fix="downscale the image, or raise KGRAG_INGEST__MAX_IMAGE_PIXELS")


def _load_dicom(p: Path, max_pixels: int | None = None) -> np.ndarray:
    from kgrag.deps import require

    pydicom = require("pydicom")
    ds = pydicom.dcmread(str(p))
    _check_pixels(p, int(getattr(ds, "Columns", 0) or 0), int(getattr(ds, "Rows", 0) or 0), max_pixels,
                  int(getattr(ds, "NumberOfFrames", 1) or 1))
    arr = ds.pixel_array.astype(np.float32)
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    arr = arr * slope + intercept
    center = getattr(ds, "WindowCenter", None)
    width = getattr(ds, "WindowWidth", None)
    if center is not None and width is not None:
        c = float(center[0] if isinstance(center, pydicom.multival.MultiValue) else center)
        w = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
        lo, hi = c - w / 2.0, c + w / 2.0
    else:
        lo, hi = float(arr.min()), float(arr.max())
    arr = np.clip((arr - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        arr = 1.0 - arr  # MONOCHROME1: high values are dark
    if arr.ndim == 3:
        arr = arr[..., 0] if arr.shape[-1] in (3, 4) else arr[0]
    return arr.astype(np.float32)


def resize_image(arr: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Grayscale float32 ``size``×``size`` (bilinear, as ``load_image(path, size)`` does)."""
    a = np.asarray(arr, dtype=np.float32)
    if a.ndim == 3:  # HxWxC or CxHxW → first channel
        a = a[..., 0] if a.shape[-1] in (1, 3, 4) else a[0]
    if a.ndim != 2:
        raise InputError(f"image has shape {a.shape}; expected a 2-D grayscale array",
                         fix="pass HxW grayscale arrays in [0, 1] (load_image)")
    if a.shape == (size, size):
        return a
    from PIL import Image

    im = Image.fromarray(a, mode="F").resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.float32)


def stack_images(images: Sequence[np.ndarray], size: int = IMAGE_SIZE) -> np.ndarray:
    """(n, 1, size, size) float32 batch from a list of HxW arrays."""
    if not len(images):
        return np.zeros((0, 1, size, size), np.float32)
    return np.stack([resize_image(im, size) for im in images])[:, None]


def _open_raster(p: Path, size: int | None, max_pixels: int | None,
                 probe: bool = False) -> tuple[np.ndarray, tuple[int, int]]:
    """(grayscale float32 array, original (height, width)) of a PNG/JPEG/... file."""
    from PIL import Image

    try:
        im = Image.open(p)
    except Image.DecompressionBombError as e:
        raise InputError(f"image {p} has more pixels than Pillow's decompression-bomb limit; it was not decoded",
                         fix="downscale the image, or raise KGRAG_INGEST__MAX_IMAGE_PIXELS") from e
    with im:
        w, h = im.size
        _check_pixels(p, w, h, max_pixels)
        if im.format == "JPEG" and (size or probe):
            # decode at 1/2, 1/4 or 1/8 scale when that still covers the target size
            im.draft("L", (size, size) if size else (max(1, w // 8), max(1, h // 8)))
        im.load()
        if im.mode in ("I;16", "I;16B", "I"):
            a = np.asarray(im, dtype=np.float32)
            arr = (a - a.min()) / max(float(a.max() - a.min()), 1e-6)
        else:
            gray = im if im.mode == "L" else im.convert("L")
            arr = np.asarray(gray, dtype=np.float32)
            arr /= 255.0
    return arr, (h, w)


def _load(path: str | Path, size: int | None, max_pixels: int | None,
          probe: bool = False) -> tuple[np.ndarray, tuple[int, int]]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"image {p} does not exist", fix="check the image path in the manifest (relative to the manifest file)")
    try:
        if _is_dicom(p):
            arr = _load_dicom(p, max_pixels)
            shape = (int(arr.shape[0]), int(arr.shape[1])) if arr.ndim == 2 else (0, 0)
        else:
            from PIL import UnidentifiedImageError

            try:
                arr, shape = _open_raster(p, size, max_pixels, probe)
            except UnidentifiedImageError as e:
                raise InputError(f"image {p} is not a readable image ({p.suffix or 'no suffix'})",
                                 fix="use PNG, JPEG or DICOM") from e
    except InputError:
        raise
    except Exception as e:  # truncated files, bad DICOM, decoder errors
        raise InputError(f"image {p} could not be decoded: {type(e).__name__}: {e}",
                         fix="re-export the image, or drop it from the record") from e
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(f"image {p} has shape {arr.shape}; expected a 2-D grayscale image", fix="convert it to grayscale")
    return arr, shape


def load_image(path: str | Path, size: int | None = None, *, max_pixels: int | None = None) -> np.ndarray:
    """Grayscale float32 array in [0, 1] (HxW, or size×size when ``size`` is given).

    Refuses images over ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`) before decoding."""
    arr, _ = _load(path, size, max_pixels)
    if size is not None:
        arr = resize_image(arr, size)
    return np.clip(arr, 0.0, 1.0, out=arr if arr.flags.writeable else None).astype(np.float32, copy=False)


def probe_image(path: str | Path, *, max_pixels: int | None = None) -> tuple[int, int]:
    """Check that ``path`` decodes (as :func:`load_image` would) within the pixel cap;
    return its original (height, width).  A JPEG is decoded at reduced scale."""
    _, shape = _load(path, None, max_pixels, probe=True)
    return shape

"""Image loading: PNG/JPEG via Pillow, DICOM via pydicom; normalized grayscale float32."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kgrag.errors import InputError

# Side of the square grayscale input every image model sees (pixels).
IMAGE_SIZE = 128
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


def _load_dicom(p: Path) -> np.ndarray:
    from kgrag.deps import require

    pydicom = require("pydicom")
    ds = pydicom.dcmread(str(p))
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


def load_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """Grayscale float32 array in [0, 1] (HxW, or size×size when ``size`` is given)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"image {p} does not exist", fix="check the image path in the manifest (relative to the manifest file)")
    try:
        if _is_dicom(p):
            arr = _load_dicom(p)
        else:
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(p) as im:
                    im.load()
                    mode = im.mode
                    if mode in ("I;16", "I;16B", "I"):
                        a = np.asarray(im, dtype=np.float32)
                        arr = (a - a.min()) / max(float(a.max() - a.min()), 1e-6)
                    else:
                        arr = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
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
    if size is not None:
        arr = resize_image(arr, size)
    return np.clip(arr, 0.0, 1.0).astype(np.float32)

"""Query images for generators: PIL RGB images (VLM processors) and PNG data URLs (HTTP)."""

from __future__ import annotations

import base64
import io
from pathlib import Path


def pil_image(path: str | Path, size: int | None = None):
    """The image at ``path`` (PNG/JPEG/DICOM, read by :func:`kgrag.imaging.load_image`) as 8-bit RGB."""
    import numpy as np
    from PIL import Image

    from kgrag.imaging import load_image

    arr = load_image(path, size=size)
    return Image.fromarray((np.clip(arr, 0.0, 1.0) * 255.0).round().astype("uint8"), mode="L").convert("RGB")


def data_url(path: str | Path, size: int | None = 512) -> str:
    """``data:image/png;base64,...`` of the image (grayscale PNG, at most ``size`` pixels a side)."""
    im = pil_image(path).convert("L")
    if size is not None and max(im.size) > size:
        im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")

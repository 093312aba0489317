"""Thumbnails as PNG data URIs: of image files (blobs), and of images held as arrays of numbers (the pixels a
model takes, as a prediction log or a dataset column holds them). Pillow draws them; without it there are none."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

THUMB = 96  # shown this size; small images are scaled up by whole pixels, without smoothing


def image_thumbnail(data: bytes) -> str | None:
    """A PNG thumbnail of an image file's bytes, or None when they are not an image (or Pillow is missing)."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        return None
    try:
        with Image.open(io.BytesIO(data)) as opened:
            return _png(opened)
    except (UnidentifiedImageError, OSError):
        return None


def array_thumbnail(values: Sequence[Any] | None, shape: Sequence[Any] | None = None) -> str | None:
    """A grey-scale PNG thumbnail of an image held as numbers: ``shape`` is the model input's ([N, 1, 8, 8],
    [N, 8, 8, 3], [N, 28, 28]); without one, a square number of values is taken as a square image. None when the
    values do not make an image."""
    try:
        import numpy as np
        from PIL import Image
    except ImportError:
        return None
    if values is None:
        return None
    x = np.asarray(values, np.float64).ravel()
    if not len(x) or not np.isfinite(x).all():
        return None
    plane = _plane(x, shape)
    if plane is None:
        return None
    low, high = float(plane.min()), float(plane.max())
    grey = np.zeros(plane.shape) if high <= low else (plane - low) / (high - low) * 255
    return _png(Image.fromarray(grey.astype(np.uint8), mode="L"))


def _plane(x: Any, shape: Sequence[Any] | None) -> Any:
    """The values as one 2-D grey image: channels (first, CHW, or last, HWC) averaged; None if they make none."""
    n = len(x)
    dims = [int(d) for d in (shape or ())[1:] if isinstance(d, int) and d > 1]
    if len(dims) == 2 and dims[0] * dims[1] == n:
        return x.reshape(dims)
    if len(dims) == 3 and dims[0] * dims[1] * dims[2] == n:
        if dims[-1] <= 4:  # HWC
            return x.reshape(dims).mean(axis=2)
        return x.reshape(dims).mean(axis=0)  # CHW
    side = math.isqrt(n)
    return x.reshape(side, side) if side >= 2 and side * side == n else None


def _png(img: Any) -> str:
    from PIL import Image

    scale = THUMB // max(img.size)
    if scale >= 2:  # a small image (8x8 digits): whole pixels, no smoothing
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    else:
        img = img.copy()
        img.thumbnail((THUMB, THUMB))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")

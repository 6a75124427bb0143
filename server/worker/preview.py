"""Small PNG previews of stored images: a maximum intensity projection of a volume,
windowed (CT with its window, else a percentile window), scaled down, 8-bit grey.

Pure functions of an array; the store runs `render` on a worker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Window", "Preview", "flatten", "choose_window", "render", "DEFAULT_SIZE", "MAX_SIZE",
           "CT_WINDOW"]

DEFAULT_SIZE = 256
MAX_SIZE = 1024
#: Centre and width (HU) of the soft-tissue window used for CT without one of its own.
CT_WINDOW = (40.0, 400.0)


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    source: str            # "requested", "image", "CT soft tissue", "percentile"


@dataclass(frozen=True)
class Preview:
    png: bytes
    width: int
    height: int
    rendering: str


def flatten(array: np.ndarray) -> tuple[np.ndarray, str]:
    """A 2-D image of any array: a volume's maximum intensity projection over its
    leading axes, a 1-D profile as one row."""
    if array.ndim == 1:
        return array.reshape(1, -1), "a 1-D profile shown as one row"
    if array.ndim == 2:
        return array, "the image"
    axes = tuple(range(array.ndim - 2))
    what = "axis 0" if len(axes) == 1 else f"axes {', '.join(map(str, axes))}"
    return array.max(axis=axes), f"maximum intensity projection over {what}"


def choose_window(image: np.ndarray, *, modality: str = "", original: bool = True,
                  center: float | None = None, width: float | None = None,
                  image_window: tuple[float, float] | None = None) -> Window:
    """The requested window; else an original image's own (CT: soft tissue without one);
    else the 0.5th to 99.5th percentile of the finite values."""
    if center is not None and width is not None and width > 0:
        return Window(float(center), float(width), "requested")
    if original and image_window is not None:
        return Window(float(image_window[0]), float(image_window[1]), "image")
    if original and modality.upper() == "CT":
        return Window(*CT_WINDOW, "CT soft tissue")
    finite = image[np.isfinite(image)] if np.issubdtype(image.dtype, np.floating) else image
    if finite.size == 0:
        return Window(0.0, 1.0, "percentile")
    lo, hi = (float(v) for v in np.percentile(finite, [0.5, 99.5]))
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    width = hi - lo if hi > lo else 1.0
    return Window(lo + width / 2, width, "percentile")


def _fit(height: int, width: int, max_size: int) -> tuple[int, int]:
    scale = min(1.0, max_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def render(array: np.ndarray, *, max_size: int = DEFAULT_SIZE, modality: str = "",
           original: bool = True, center: float | None = None, width: float | None = None,
           image_window: tuple[float, float] | None = None,
           spacing: tuple[float, ...] | None = None) -> Preview:
    """The PNG preview of ``array`` (rows and columns keep their physical aspect when
    ``spacing`` gives it)."""
    import cv2

    if not 16 <= max_size <= MAX_SIZE:
        raise ValueError(f"max_size must be 16..{MAX_SIZE}, got {max_size}")
    flat, what = flatten(np.asarray(array))
    window = choose_window(flat, modality=modality, original=original, center=center,
                           width=width, image_window=image_window)
    lo = window.center - window.width / 2
    scaled = (flat.astype(np.float32) - lo) * (255.0 / window.width)
    grey = np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255).astype(np.uint8)
    rows, cols = grey.shape
    if spacing is not None and len(spacing) >= 2 and spacing[-2] > 0 and spacing[-1] > 0:
        rows = max(1, round(rows * spacing[-2] / spacing[-1]))
    h, w = _fit(rows, cols, max_size)
    if (h, w) != grey.shape:
        shrinking = h <= grey.shape[0] and w <= grey.shape[1]
        grey = cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA if shrinking
                          else cv2.INTER_LINEAR)
    ok, png = cv2.imencode(".png", grey)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    rendering = (f"{what}, window centre {window.center:g} width {window.width:g} "
                 f"({window.source}), {w} x {h} pixels")
    return Preview(png.tobytes(), w, h, rendering)

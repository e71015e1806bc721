"""One image reader for the command line: a PNG or JPEG as a float64 (C, H, W) array in [0, 1].

Pillow reads the file (it comes with matplotlib; ``matplotlib.image`` cost about 0.35 s of a cold
``lipopt certify``). Each pixel mode is scaled by its own range, never by a guess from the values: an
8-bit image by 255 (a dark JPEG whose pixels are all 0 or 1 stays near 0), a 16-bit PNG by 65535, a
bilevel image as 0 / 1. An alpha channel is dropped; a palette image is expanded to RGB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

# Pillow mode -> (mode to convert to first, or None; full-scale value; channels to keep)
_MODES: dict[str, tuple[str | None, float, int]] = {
    "1": ("L", 255.0, 1),
    "L": (None, 255.0, 1),
    "LA": (None, 255.0, 1),
    "P": ("RGB", 255.0, 3),
    "PA": ("RGBA", 255.0, 3),
    "RGB": (None, 255.0, 3),
    "RGBA": (None, 255.0, 3),
    "RGBX": (None, 255.0, 3),
    "CMYK": ("RGB", 255.0, 3),
    "YCbCr": ("RGB", 255.0, 3),
    "I;16": (None, 65535.0, 1),
    "I;16B": (None, 65535.0, 1),
    "I;16L": (None, 65535.0, 1),
    "I": (None, 65535.0, 1),  # Pillow opens a 16-bit greyscale PNG as 32-bit "I"
}


def read_image(path: str | Path) -> np.ndarray:
    """The image at ``path`` as float64, shape (channels, height, width), values in [0, 1].

    Raises ValueError for a file Pillow cannot read or a pixel mode outside the supported list.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode not in _MODES:
                raise ValueError(f"image {str(path)!r} has pixel mode {mode!r}; supported: "
                                 f"{', '.join(_MODES)}")
            convert, full, keep = _MODES[mode]
            arr = np.asarray(im.convert(convert) if convert else im, dtype=np.float64)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read the image {str(path)!r} ({type(exc).__name__}: {exc})") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    arr = arr[..., :keep] / full
    if mode == "I" and (arr.max(initial=0.0) > 1.0 or arr.min(initial=0.0) < 0.0):
        raise ValueError(f"image {str(path)!r}: 32-bit integer pixels outside the 16-bit range; "
                         "supported are 8- and 16-bit images")
    return np.ascontiguousarray(arr.transpose(2, 0, 1))

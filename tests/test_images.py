"""lipopt.images.read_image against matplotlib's reader (an independent implementation) on every
supported pixel mode, a dark JPEG whose scale cannot be guessed from its values, the shipped MNIST and
CIFAR images, and files it cannot read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lipopt.images import read_image
from tests.paths import EXTERNAL, ROOT

Image = pytest.importorskip("PIL.Image")
mpimg = pytest.importorskip("matplotlib.image")


def _mpl(path: Path) -> np.ndarray:
    """matplotlib's reading in the same layout: (C, H, W), alpha dropped, scaled to [0, 1]."""
    img = np.asarray(mpimg.imread(path), dtype=np.float64)
    if np.issubdtype(mpimg.imread(path).dtype, np.integer):
        img = img / 255.0
    if img.ndim == 2:
        img = img[..., None]
    keep = 1 if img.shape[2] in (1, 2) else 3
    return img[..., :keep].transpose(2, 0, 1)


_RNG = np.random.default_rng(0)
_RGB = _RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
_GREY = _RNG.integers(0, 256, size=(5, 7), dtype=np.uint8)


def _make(mode: str) -> Image.Image:
    if mode == "L":
        return Image.fromarray(_GREY, "L")
    if mode == "LA":
        return Image.fromarray(np.dstack([_GREY, _GREY[::-1]]), "LA")
    if mode == "RGB":
        return Image.fromarray(_RGB, "RGB")
    if mode == "RGBA":
        return Image.fromarray(np.dstack([_RGB, _GREY]), "RGBA")
    if mode == "P":
        return Image.fromarray(_RGB, "RGB").quantize(colors=16)
    if mode == "1":
        return Image.fromarray(_GREY > 128)
    if mode == "I;16":
        return Image.fromarray(_RNG.integers(0, 65536, size=(5, 7)).astype(np.uint16))
    raise AssertionError(mode)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "1", "I;16"])
def test_png_modes_match_matplotlib(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"img_{mode.replace(';', '')}.png"
    _make(mode).save(path)
    got = read_image(path)
    want = _mpl(path)
    if mode == "LA":  # matplotlib expands grey + alpha to RGBA; its three colour channels are the grey
        assert want.shape[0] == 3 and got.shape[0] == 1
        want = want[:1]
    assert got.dtype == np.float64 and got.shape == want.shape
    assert got.min() >= 0.0 and got.max() <= 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)  # matplotlib returns float32


def test_sixteen_bit_png_by_hand(tmp_path: Path) -> None:
    raw = np.array([[0, 1, 65535], [256, 32768, 65534]], dtype=np.uint16)
    Image.fromarray(raw).save(tmp_path / "g16.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g16.png")[0], raw / 65535.0)


def test_dark_jpeg_is_scaled_by_its_bit_depth_not_its_values(tmp_path: Path) -> None:
    """All pixels 0 or 1 out of 255: the old max() > 1 guess left them at 0 and 1."""
    dark = np.zeros((8, 8), dtype=np.uint8)
    dark[2:6, 2:6] = 1
    Image.fromarray(dark, "L").save(tmp_path / "dark.png")
    got = read_image(tmp_path / "dark.png")
    np.testing.assert_array_equal(got[0], dark / 255.0)
    Image.fromarray(_RGB, "RGB").save(tmp_path / "c.jpg", quality=95)
    np.testing.assert_allclose(read_image(tmp_path / "c.jpg"), _mpl(tmp_path / "c.jpg"), atol=1e-12)


@pytest.mark.parametrize("name,shape", [("mnist_8.png", (1, 28, 28)), ("cifar10_dog4.png", (3, 32, 32))])
def test_shipped_images(name: str, shape: tuple[int, ...]) -> None:
    path = EXTERNAL / "avant" / name
    if not path.is_file():
        pytest.skip(f"{path} not present")
    got = read_image(path)
    assert got.shape == shape
    np.testing.assert_allclose(got, _mpl(path), atol=1e-7)


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ValueError, match=r"broken\.png"):
        read_image(bad)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.jpg"):
        read_image(empty)
    Image.fromarray(np.ones((3, 3), dtype=np.float32), "F").save(tmp_path / "f.tiff")
    with pytest.raises(ValueError, match=r"pixel mode 'F'; supported"):
        read_image(tmp_path / "f.tiff")


def test_reading_an_image_does_not_import_matplotlib(tmp_path: Path) -> None:
    Image.fromarray(_GREY, "L").save(tmp_path / "g.png")
    img = str(tmp_path / "g.png")
    code = (f"import json, sys; from lipopt.images import read_image; read_image({img!r}); "
            "print(json.dumps('matplotlib' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) is False

"""Helpers for the data tests that write real image files with PIL."""

import os

import numpy as np
from PIL import Image


def solid_image(value, size=(16, 16)):
    """uint8 [H, W, 3] image whose red channel is `value`: every format stores it exactly
    (JPEG nearly), so a decoded pixel says which file it came from."""
    height, width = size
    pixels = np.zeros([height, width, 3], np.uint8)
    pixels[..., 0] = value
    pixels[..., 1] = 100
    pixels[..., 2] = 200
    return pixels


def write_image(path, pixels, mode=None, **save_kwargs):
    """Writes `pixels` to `path` with PIL (format from the extension), optionally converted."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = Image.fromarray(pixels)
    if mode is not None:
        image = image.convert(mode)
    image.save(path, **save_kwargs)
    return path


def write_truncated_jpeg(path, size=(16, 16)):
    """A JPEG of noise cut to 60% of its bytes: the header is valid, the data is not."""
    noise = np.random.default_rng(0).integers(0, 256, [*size, 3], dtype=np.uint8)
    write_image(path, noise, quality=95)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * 0.6)])
    return path


def write_bytes(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path

"""Decoding image files into one uint8 array in memory with PIL (the fast path).

PIL is used rather than `tf.io` because each failure surfaces as a Python exception on the
file that caused it, so unreadable files can be skipped and named; for small images
(CIFAR-size) it decodes ~5k images per second per core. The bytes are read with
`tf.io.gfile`, so files on any TensorFlow file system (`gs://`, ...) decode alike.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from keras_ssl.data.split import Split
from keras_ssl.data.storage import read_bytes

_NAMED_SKIPS = 20  # files named in the warning; DataSource.skipped_files has them all


def _open_rgb(path: str, image_size: int | None) -> np.ndarray:
    """Decodes one file to uint8 [H, W, 3]; raises on any unreadable file."""
    # One read of the whole file: PIL's many small reads would each cross into gfile.
    with Image.open(io.BytesIO(read_bytes(path))) as image:
        # GIFs open on their first frame. convert("RGB") turns grayscale, palette, RGBA
        # (alpha dropped) and CMYK images into 3 channels, as tf.io.decode_image(channels=3).
        image = image.convert("RGB")
    if image_size is not None and image.size != (image_size, image_size):
        # Bilinear with PIL's area support when shrinking, close to
        # tf.image.resize(antialias=True) used on the streamed path.
        image = image.resize((image_size, image_size), Image.BILINEAR)
    return np.asarray(image)


def peek_image_shape(paths: list[str]) -> tuple[int, int] | None:
    """(height, width) of the first file whose header PIL can read, or None.

    Only the header of the first readable file is parsed, so this is cheap; it sizes the
    in-memory array before decoding.

    Args:
        paths: candidate image files, tried in order.
    """
    for path in paths:
        try:
            with Image.open(io.BytesIO(read_bytes(path))) as image:
                width, height = image.size
                return height, width
        except Exception:  # noqa: BLE001 - any unreadable file is just skipped here.
            continue
    return None


def decode_images(paths: list[str], image_size: int | None = None):
    """Decodes image files into one uint8 array, skipping files that cannot be read.

    Args:
        paths: image files in the order they should appear.
        image_size: if given, every image is resized to image_size x image_size; if None,
            all images must share the size of the first readable one.

    Returns:
        (images, kept, skipped): uint8 [M, H, W, 3]; int64 [M] positions in `paths` of the
        decoded images; and the list of skipped paths.

    Raises:
        ValueError: when image_size is None and the images do not all have one size.
    """
    images = None  # allocated once the first image is decoded and its size is known
    kept, skipped = [], []
    for position, path in enumerate(paths):
        try:
            pixels = _open_rgb(path, image_size)
        # PIL's format plugins raise many types on bad data (OSError, SyntaxError,
        # ValueError, struct.error, EOFError, ...); every one of them means "skip this file".
        except Exception:  # noqa: BLE001
            skipped.append(path)
            continue
        if images is None:
            images = np.empty((len(paths), *pixels.shape), dtype=np.uint8)
        elif pixels.shape != images.shape[1:]:
            raise ValueError(
                f"Images differ in size: {path} is {pixels.shape[1]}x{pixels.shape[0]} but "
                f"earlier images are {images.shape[2]}x{images.shape[1]}. "
                "Pass image_size=... to resize them."
            )
        # Writing into the next free row keeps skipped files from leaving gaps, so the
        # result is a view of the first rows and needs no copy.
        images[len(kept)] = pixels
        kept.append(position)
    if images is None:
        size = image_size or 0
        images = np.empty((0, size, size, 3), dtype=np.uint8)
    return images[: len(kept)], np.asarray(kept, dtype=np.int64), skipped


def resize_images(images: np.ndarray, image_size: int) -> np.ndarray:
    """Resizes a uint8 [N, H, W, 3] array to [N, image_size, image_size, 3] with PIL.

    Args:
        images: uint8 images.
        image_size: target height and width.
    """
    if images.shape[1:3] == (image_size, image_size):
        return images
    resized = np.empty((len(images), image_size, image_size, 3), dtype=np.uint8)
    for i, pixels in enumerate(images):
        resized[i] = np.asarray(Image.fromarray(pixels).resize((image_size, image_size), Image.BILINEAR))
    return resized


def warn_skipped(where: str, skipped: list[str]) -> None:
    """Names skipped files in one warning, so a bad data set is noticed but never fatal.

    Args:
        where: the spec or split the files belong to.
        skipped: the skipped files.
    """
    if not skipped:
        return
    named = "\n  ".join(skipped[:_NAMED_SKIPS])
    more = f"\n  ... and {len(skipped) - _NAMED_SKIPS} more" if len(skipped) > _NAMED_SKIPS else ""
    warnings.warn(
        f"Skipped {len(skipped)} unreadable image file(s) in {where} (empty, truncated, corrupt "
        f"or not an image):\n  {named}{more}",
        UserWarning,
        stacklevel=3,  # point at the caller of load_source / decode_split
    )


def decode_split(split: Split, image_size: int | None = None) -> Split:
    """Decodes a streamed split into memory (source -> subset -> decode).

    Loading a large folder with cache_limit_bytes=0 only lists files; subsetting first
    and decoding the subset afterwards then reads just the files that are kept.
    Unreadable files are dropped and named in one warning.

    Args:
        split: a split with `paths` (a split already in memory is only resized).
        image_size: resize every image to image_size x image_size.

    Example:
        >>> source = load_source("/data/cifar10", cache_limit_bytes=0)
        >>> labeled = decode_split(per_class_subset(source.train, per_class=100))
    """
    if split.images is not None:
        images = split.images if image_size is None else resize_images(split.images, image_size)
        return Split(images=images, paths=None, labels=split.labels)
    images, kept, skipped = decode_images(split.paths, image_size)
    warn_skipped("decode_split", skipped)
    return Split(images=images, paths=None, labels=split.labels[kept])

"""`load_source`: one entry point from a `--data` spec string to a DataSource."""

from __future__ import annotations

import os

import tensorflow as tf

from keras_ssl.data.array_sources import load_npz, load_tfds
from keras_ssl.data.decode import warn_skipped
from keras_ssl.data.folder_source import load_image_folder
from keras_ssl.data.split import DataSource

TFDS_PREFIX = "tfds:"
NPZ_PREFIX = "npz:"
VALID_SPECS = (
    "an image folder path (class sub-folders, optional train/ and test/ splits), "
    "'tfds:NAME' (a tensorflow-datasets name), or "
    "'npz:PATH' (a .npz file with x_train, y_train, x_test, y_test)"
)


def _path_problem(path: str, *, folder: bool) -> str | None:
    """Why `path` is not the folder (or file) a spec must name, or None when it is.

    Asked through `tf.io.gfile`, so the path may be a URL of any TensorFlow file system.
    """
    try:
        if tf.io.gfile.isdir(path):
            return None if folder else "is a folder, not a file"
        if tf.io.gfile.exists(path):
            return "is a file, not a folder" if folder else None
        return "does not exist"
    # An unknown scheme (s3:// without its plugin), an unreachable bucket, a denied read.
    except tf.errors.OpError as error:
        return f"cannot be reached ({type(error).__name__}: {error.message})"


def load_source(
    spec: str,
    *,
    image_size: int | None = None,
    cache_limit_bytes: int = 2**31,
    tfds_data_dir: str | None = None,
) -> DataSource:
    """Loads the data set named by `spec`.

    Image folders: JPEG, PNG, BMP and GIF (first frame) files, found by extension, in sorted
    order; class index = sorted class folder name order; grayscale and RGBA become RGB. A
    split that fits in `cache_limit_bytes` once decoded is decoded up front into
    `Split.images`; a larger one keeps `Split.paths` and is decoded by the tf.data pipeline.
    Unreadable files are skipped, listed in `skipped_files` and named in one warning.
    Folder and npz paths may be URLs of any TensorFlow file system (`gs://bucket/cifar10`).

    Args:
        spec: an image folder path (`class/` sub-folders, with `train/` and `test/`
            sub-splits when present, else the whole folder is train and test is None; a
            folder of images without sub-folders is unlabeled), `tfds:NAME` (train/test
            splits of a tensorflow-datasets set with keys image/label), or `npz:PATH`
            (arrays x_train, y_train, x_test, y_test as keras.datasets uses).
        image_size: resize every image to image_size x image_size; None keeps the stored
            size, which then must be the same for all images of a decoded split.
        cache_limit_bytes: largest decoded size (bytes) of a split kept in memory.
        tfds_data_dir: where tensorflow-datasets keeps its prepared data sets (None: its
            default, ~/tensorflow_datasets or $TFDS_DATA_DIR); may be a `gs://` folder.

    Returns:
        The DataSource.

    Raises:
        ValueError: for a spec that names nothing loadable; the message lists the valid forms.

    Example:
        >>> source = load_source("/data/cifar10", image_size=32)
        >>> labeled = per_class_subset(source.train, per_class=400)
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"Data spec {spec!r} is empty. Use {VALID_SPECS}.")
    if image_size is not None and image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}.")

    if spec.startswith(TFDS_PREFIX):
        name = spec[len(TFDS_PREFIX):]
        if not name:
            raise ValueError(f"Data spec {spec!r} has no data set name after 'tfds:'. Use {VALID_SPECS}.")
        source = load_tfds(name, image_size=image_size, cache_limit_bytes=cache_limit_bytes,
                           data_dir=tfds_data_dir)
    elif spec.startswith(NPZ_PREFIX):
        path = os.path.expanduser(spec[len(NPZ_PREFIX):])
        problem = _path_problem(path, folder=False)
        if problem:
            raise ValueError(f"Data spec {spec!r}: no file {path!r} (it {problem}). Use {VALID_SPECS}.")
        source = load_npz(path, image_size=image_size)
    else:
        path = os.path.expanduser(spec)
        problem = _path_problem(path, folder=True)
        if problem:
            raise ValueError(f"Data spec {spec!r}: path {path!r} {problem}. Use {VALID_SPECS}.")
        source = load_image_folder(path, image_size=image_size, cache_limit_bytes=cache_limit_bytes)

    # One warning for all splits; DataSource.skipped_files lists every file.
    warn_skipped(spec, source.skipped_files)
    return source

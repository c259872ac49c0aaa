"""Loading an image folder (class sub-folders, optional train/test splits) as a DataSource."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from keras_ssl.data.decode import decode_images, peek_image_shape
from keras_ssl.data.image_files import IMAGE_EXTENSIONS, has_image_header, list_image_folder
from keras_ssl.data.split import DataSource, Split

TRAIN_FOLDER = "train"
# The first of these beside `train/` is the test split; ImageNet-style trees call it `val/`.
TEST_FOLDERS = ("test", "val", "validation")


def _split_folders(root: str) -> tuple[str, str | None]:
    """(train folder, test folder or None); without `train/` the whole root is train."""
    train_dir = os.path.join(root, TRAIN_FOLDER)
    if not tf.io.gfile.isdir(train_dir):
        return root, None
    for name in TEST_FOLDERS:
        test_dir = os.path.join(root, name)
        if tf.io.gfile.isdir(test_dir):
            return train_dir, test_dir
    return train_dir, None


def _relabel(labels: list[int], names: list[str], class_names: list[str], folder: str) -> np.ndarray:
    """Maps labels indexing `names` onto the shared `class_names` order (-1 stays -1)."""
    unknown = sorted(set(names) - set(class_names))
    if unknown:
        raise ValueError(
            f"Class folders {unknown} in {folder} are not among the training classes {class_names}."
        )
    lookup = np.asarray([class_names.index(name) for name in names] + [-1], dtype=np.int64)
    # Index -1 picks the appended -1, so unlabeled entries stay unlabeled.
    return lookup[np.asarray(labels, dtype=np.int64)]


def _estimated_bytes(paths: list[str], image_size: int | None) -> int:
    """Memory the decoded split would take, from image_size or the first readable image."""
    if image_size is not None:
        height, width = image_size, image_size
    else:
        height, width = peek_image_shape(paths) or (0, 0)
    return len(paths) * height * width * 3


def _load_split(
    paths: list[str], labels: np.ndarray, image_size: int | None, cache_limit_bytes: int
) -> tuple[Split, list[str]]:
    """Decodes a split into memory when it fits in cache_limit_bytes, else keeps its paths.

    Returns:
        (split, skipped files).
    """
    if _estimated_bytes(paths, image_size) <= cache_limit_bytes:
        images, kept, skipped = decode_images(paths, image_size)
        return Split(images=images, paths=None, labels=labels[kept]), skipped
    # Streamed: only a header check now; tf.data decodes (and drops any file whose data
    # turns out corrupt) while training.
    valid = [has_image_header(path) for path in paths]
    kept_paths = [path for path, ok in zip(paths, valid) if ok]
    skipped = [path for path, ok in zip(paths, valid) if not ok]
    return Split(images=None, paths=kept_paths, labels=labels[np.asarray(valid, dtype=bool)]), skipped


def load_image_folder(root: str, *, image_size: int | None, cache_limit_bytes: int) -> DataSource:
    """Loads an image folder.

    Layout: `root/train/<class>/...` and `root/test/<class>/...` (or `val/`); without a
    `train/` folder, `root/<class>/...` is the train split and there is no test split. A
    folder of images without sub-folders is unlabeled (labels -1, no class names). Class
    index = sorted order of the class folder names of train (of test if train is unlabeled).

    Args:
        root: the folder.
        image_size: resize every image to image_size x image_size; None keeps sizes.
        cache_limit_bytes: decode a split into memory when it takes at most this many bytes.

    Returns:
        The DataSource; files that could not be read are left out and listed in
        `skipped_files`.
    """
    train_dir, test_dir = _split_folders(root)
    train_paths, train_labels, train_names = list_image_folder(train_dir)
    if not train_paths:
        raise ValueError(
            f"No image files ({', '.join(IMAGE_EXTENSIONS)}) found under {train_dir}."
        )
    test_paths, test_labels, test_names = list_image_folder(test_dir) if test_dir else ([], [], [])
    class_names = train_names or test_names

    train, skipped = _load_split(
        train_paths, _relabel(train_labels, train_names, class_names, train_dir),
        image_size, cache_limit_bytes,
    )
    if not len(train):
        raise ValueError(f"None of the {len(train_paths)} image files under {train_dir} could be read.")
    test = None
    if test_paths:
        test, test_skipped = _load_split(
            test_paths, _relabel(test_labels, test_names, class_names, test_dir),
            image_size, cache_limit_bytes,
        )
        skipped += test_skipped
    return DataSource(
        train=train,
        test=test,
        class_names=list(class_names),
        num_classes=len(class_names),
        skipped_files=skipped,
    )

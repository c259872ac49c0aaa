"""Sources that arrive as arrays: `tfds:NAME` (TensorFlow Datasets) and `npz:PATH` files.

Both are decoded into memory (Split.images), which is what CIFAR/STL-scale sets need; a
data set too big for memory belongs in an image folder, which can be streamed.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_ssl.data.decode import resize_images
from keras_ssl.data.split import DataSource, Split

_TFDS_BATCH = 1024  # examples per chunk when copying a tfds split into numpy


def _to_rgb(images: np.ndarray, where: str) -> np.ndarray:
    """uint8 [N, H, W] / [N, H, W, 1] / [N, H, W, 3|4] -> uint8 [N, H, W, 3]."""
    if images.dtype != np.uint8:
        raise ValueError(f"{where}: images must be uint8 in [0, 255], got dtype {images.dtype}.")
    if images.ndim == 3:  # grayscale without a channel axis, as keras.datasets.mnist
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{where}: images must be [N, H, W(, 1|3|4)], got shape {images.shape}.")
    if images.shape[-1] == 1:
        return np.repeat(images, 3, axis=-1)
    return images[..., :3]  # drops alpha, as PIL's convert("RGB") does for files


def _labels(labels, count: int, where: str) -> np.ndarray:
    """int64 [N] labels; y as [N, 1] (keras.datasets.cifar10) is flattened; None -> -1."""
    if labels is None:
        return np.full([count], -1, dtype=np.int64)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if len(labels) != count:
        raise ValueError(f"{where}: {count} images but {len(labels)} labels.")
    return labels


def load_npz(path: str, *, image_size: int | None) -> DataSource:
    """Loads arrays x_train, y_train, x_test, y_test (as keras.datasets returns them).

    x_test/y_test may be absent (no test split) and y_train may be absent (unlabeled). An
    optional `class_names` array names the classes; otherwise they are "0", "1", ...

    Args:
        path: the .npz file, local or on any TensorFlow file system (`gs://...`).
        image_size: resize every image to image_size x image_size; None keeps sizes.
    """
    # np.load reads the zip archive through the GFile's read and seek, one array at a time,
    # so the file is never held in memory twice.
    with tf.io.gfile.GFile(path, "rb") as file, np.load(file, allow_pickle=False) as arrays:
        if "x_train" not in arrays:
            raise ValueError(
                f"npz:{path} has arrays {sorted(arrays.files)}; it needs x_train "
                "(and usually y_train, x_test, y_test, as keras.datasets uses)."
            )
        splits = {}
        for name in ("train", "test"):
            if f"x_{name}" not in arrays:
                continue
            images = _to_rgb(arrays[f"x_{name}"], f"npz:{path} x_{name}")
            if image_size is not None:
                images = resize_images(images, image_size)
            labels = arrays[f"y_{name}"] if f"y_{name}" in arrays else None
            labels = _labels(labels, len(images), f"npz:{path} y_{name}")
            splits[name] = Split(images=images, paths=None, labels=labels)
        class_names = [str(n) for n in arrays["class_names"]] if "class_names" in arrays else None

    if class_names is None:
        top = max(int(split.labels.max(initial=-1)) for split in splits.values())
        class_names = [str(c) for c in range(top + 1)]
    return DataSource(
        train=splits["train"],
        test=splits.get("test"),
        class_names=class_names,
        num_classes=len(class_names),
    )


def _tfds_split_to_numpy(name: str, split: str, image_size: int | None, data_dir: str | None) -> Split:
    """Copies one tfds split (keys image/label) into a uint8 in-memory Split."""
    import tensorflow_datasets as tfds  # slow import, only paid by tfds sources

    def to_arrays(example):
        image = example["image"]
        if image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        image = image[..., :3]
        if image_size is not None:
            image = tf.image.resize(image, [image_size, image_size], antialias=True)
            image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        label = example["label"] if "label" in example else tf.constant(-1, tf.int64)
        return image, tf.cast(label, tf.int64)

    try:
        dataset = tfds.load(name, split=split, data_dir=data_dir)
    # tfds.load downloads and prepares missing data; offline that fails in many ways
    # (network errors, missing optional modules), none of which names the spec.
    except Exception as error:  # noqa: BLE001
        raise ValueError(
            f"tfds:{name}: tfds.load(split={split!r}) failed with {type(error).__name__}: {error}. "
            "Prepare the data set first (it needs a download) or use an image folder or npz file."
        ) from error
    dataset = dataset.map(to_arrays, num_parallel_calls=tf.data.AUTOTUNE)
    images, labels = [], []
    try:
        for image_chunk, label_chunk in dataset.batch(_TFDS_BATCH).as_numpy_iterator():
            images.append(image_chunk)
            labels.append(label_chunk)
    except tf.errors.InvalidArgumentError as error:
        # Batching fails when images differ in size; resizing is the user's choice.
        raise ValueError(
            f"tfds:{name} split {split!r}: cannot stack images ({error.message.splitlines()[0]}). "
            "Pass image_size=... to resize them."
        ) from None
    if not images:
        raise ValueError(f"tfds:{name} split {split!r} is empty.")
    return Split(images=np.concatenate(images), paths=None, labels=np.concatenate(labels))


def load_tfds(
    name: str, *, image_size: int | None, cache_limit_bytes: int, data_dir: str | None = None
) -> DataSource:
    """Loads the train and (if present) test split of a tfds data set into memory.

    Args:
        name: a tfds name, optionally with config/version ("cifar10", "mnist:3.0.1").
        image_size: resize every image to image_size x image_size; None keeps sizes.
        cache_limit_bytes: refuse (ValueError) a split whose decoded size, as recorded in
            the tfds metadata, is above this.
        data_dir: the folder of prepared tfds data sets (None: tfds's default); any
            TensorFlow file system, as tfds reads it through `tf.io.gfile`.
    """
    import tensorflow_datasets as tfds

    try:
        info = tfds.builder(name, data_dir=data_dir).info
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(f"tfds:{name}: no such tensorflow-datasets data set.") from None
    if "image" not in info.features:
        raise ValueError(f"tfds:{name} has features {list(info.features)}; it needs 'image'.")

    height, width = info.features["image"].shape[:2]
    if image_size is not None:
        height = width = image_size
    known_splits = dict(info.splits)
    for split in ("train", "test"):
        if split in known_splits and height and width:
            needed = known_splits[split].num_examples * height * width * 3
            if needed > cache_limit_bytes:
                raise ValueError(
                    f"tfds:{name} split {split!r} needs {needed / 2**30:.1f} GiB in memory, over "
                    f"cache_limit_bytes={cache_limit_bytes}. Export it as an image folder "
                    "(streamed from disk) or raise the limit."
                )

    train = _tfds_split_to_numpy(name, "train", image_size, data_dir)
    test = None
    if "test" in known_splits:
        test = _tfds_split_to_numpy(name, "test", image_size, data_dir)
    elif not known_splits:
        # Split metadata can be missing (never prepared, or mocked in tests): try `test`.
        try:
            test = _tfds_split_to_numpy(name, "test", image_size, data_dir)
        except ValueError:
            test = None

    label = info.features["label"] if "label" in info.features else None
    class_names = list(getattr(label, "names", None) or [])
    num_classes = getattr(label, "num_classes", None) or len(class_names)
    return DataSource(train=train, test=test, class_names=class_names, num_classes=num_classes)

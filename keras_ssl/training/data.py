"""The training split a run uses: the source, its subset, decoded into memory when it fits."""

import dataclasses

from keras_ssl import data as ssl_data


def load_training_data(spec, *, image_size, train_per_class, imbalance_ratio,
                       cache_limit_bytes=2**31, tfds_data_dir=None):
    """The source, and its training split reduced to the requested subset.

    Files are listed first and only the kept subset is decoded (into memory
    when it fits in `cache_limit_bytes`): the CPU protocol keeps 10,000 of
    50,000 training images, so this reads a fifth of the folder.

    Args:
        spec: an image folder, `tfds:NAME` or `npz:PATH`.
        image_size: side images are decoded at.
        train_per_class: keep the first N training images of each class (0: all).
        imbalance_ratio: a long-tail subset with this ratio (0: balanced);
            `train_per_class` then caps the head class.
        cache_limit_bytes: largest split decoded into memory; larger ones stream.
        tfds_data_dir: where tensorflow-datasets keeps prepared sets (None: its default).

    Returns:
        (source, train split, number of unreadable files skipped).
    """
    source = ssl_data.load_source(spec, image_size=image_size, cache_limit_bytes=0,
                                  tfds_data_dir=tfds_data_dir)
    train = source.train
    if imbalance_ratio:
        train = ssl_data.long_tail_subset(train, imbalance_ratio,
                                          max_per_class=train_per_class or None)
    elif train_per_class:
        train = ssl_data.per_class_subset(train, train_per_class)
    train, skipped_train = _decode_if_it_fits(train, image_size, cache_limit_bytes)
    test, skipped_test = _decode_if_it_fits(source.test, image_size, cache_limit_bytes)
    source = dataclasses.replace(source, test=test)
    return source, train, len(source.skipped_files) + skipped_train + skipped_test


def _decode_if_it_fits(split, image_size, cache_limit_bytes):
    """Decodes a streamed split into memory when it fits; returns (split, files skipped)."""
    if split is None or split.paths is None or (
            len(split) * image_size**2 * 3 > cache_limit_bytes):
        return split, 0
    decoded = ssl_data.decode_split(split, image_size)
    return decoded, len(split) - len(decoded)

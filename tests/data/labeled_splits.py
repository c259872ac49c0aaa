"""In-memory splits and view functions the labeled-stream tests share."""

import numpy as np
import tensorflow as tf

from keras_ssl.data import Split

CIFAR10 = "/work/shared/data/cifar10"


def numbered_split(labels, size=4):
    """In-memory split whose image i is filled with the value i (so views name their example)."""
    labels = np.asarray(labels)
    count = len(labels)
    assert count <= 256
    images = np.broadcast_to(np.arange(count, dtype=np.uint8)[:, None, None, None], [count, size, size, 3])
    return Split(images=np.ascontiguousarray(images), paths=None, labels=labels)


def path_split(labels):
    labels = np.asarray(labels)
    return Split(images=None, paths=[f"{i}.jpg" for i in range(len(labels))], labels=labels)


def seed_view_fn(images, seed):
    """Views: the images as float, and the batch's augmentation seed repeated per row."""
    batch = tf.shape(images)[0]
    return tf.cast(images, tf.float32) / 255.0, tf.tile(seed[None], [batch, 1])


def two_view_fn(images, seed):
    """A labeled view_fn distinct from the unlabeled one: two views, the second inverted."""
    image = tf.cast(images, tf.float32) / 255.0
    return image, 1.0 - image


def as_batches(dataset):
    return list(dataset.as_numpy_iterator())


def imbalanced_labels():
    """5 classes of 30, 24, 18, 40 and 12 examples, shuffled, plus 6 unlabeled (-1) rows."""
    labels = np.concatenate([np.repeat(np.arange(5), [30, 24, 18, 40, 12]), np.full(6, -1)])
    return np.random.default_rng(0).permutation(labels)


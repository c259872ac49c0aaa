"""Fixed-shape memory for negatives: a FIFO queue (MoCo) and an indexed bank (NPID)."""

import keras
import numpy as np
import tensorflow as tf

from keras_ssl.distribute import replicated_state_scope


class Queue(keras.layers.Layer):
    """A ring buffer of L2-normalised keys (MoCo's dictionary).

    Args:
        size: number of keys kept (MoCo v2: 65,536; CIFAR: 4,096).
        dim: key width.
        seed: seed of the random unit-norm initial keys.

    `keys` is read before `enqueue` in a step, so the loss uses the previous
    steps' keys only. `enqueue` takes all-gathered keys, so every replica
    writes the same rows; the variables are created with ONLY_FIRST_REPLICA.
    The size need not be a multiple of the batch: writes wrap around.

    Example:
    >>> queue = Queue(size=8, dim=4)
    >>> queue.enqueue(tf.ones((3, 4)))
    >>> int(queue.pointer.numpy())
    3
    """

    def __init__(self, size, dim, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.size = size
        self.dim = dim
        initial = np.random.default_rng(seed).standard_normal((size, dim))
        initial /= np.linalg.norm(initial, axis=1, keepdims=True)
        with replicated_state_scope():
            self.keys = self.add_weight(shape=(size, dim), trainable=False,
                                        initializer=keras.initializers.Constant(
                                            initial.astype("float32")),
                                        name="keys")
            self.pointer = self.add_weight(shape=(), dtype="int64", trainable=False,
                                           initializer="zeros", name="pointer")
        self.built = True

    def enqueue(self, keys):
        keys = tf.cast(tf.stop_gradient(keys), self.keys.dtype)
        count = tf.shape(keys, out_type=tf.int64)[0]
        rows = (self.pointer + tf.range(count)) % self.size
        self.keys.assign(tf.tensor_scatter_nd_update(
            self.keys.value, rows[:, None], keys))
        self.pointer.assign((self.pointer + count) % self.size)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "dim": self.dim}


class IndexedMemoryBank(keras.layers.Layer):
    """One L2-normalised row per training example (NPID's memory bank).

    Args:
        size: number of training examples.
        dim: feature width.
        momentum: m in `row <- normalize(m * row + (1 - m) * feature)`
            (NPID: 0.5).
        seed: seed of the initial rows, uniform in [-s, s] with s = 1/sqrt(dim/3)
            as NPID's LinearAverage, then normalised.
    """

    def __init__(self, size, dim, momentum=0.5, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.size = size
        self.dim = dim
        self.momentum = momentum
        bound = 1.0 / np.sqrt(dim / 3.0)
        initial = np.random.default_rng(seed).uniform(-bound, bound, (size, dim))
        initial /= np.linalg.norm(initial, axis=1, keepdims=True)
        with replicated_state_scope():
            self.rows = self.add_weight(shape=(size, dim), trainable=False,
                                        initializer=keras.initializers.Constant(
                                            initial.astype("float32")),
                                        name="rows")
        self.built = True

    def update(self, indices, features):
        """Momentum-updates the rows of `indices` (all-gathered) with `features`."""
        indices = tf.cast(indices, tf.int64)[:, None]
        features = tf.cast(tf.stop_gradient(features), self.rows.dtype)
        old = tf.gather_nd(self.rows.value, indices)
        new = tf.math.l2_normalize(
            self.momentum * old + (1.0 - self.momentum) * features, axis=1)
        self.rows.assign(tf.tensor_scatter_nd_update(self.rows.value, indices, new))

    def get_config(self):
        return {**super().get_config(), "size": self.size, "dim": self.dim,
                "momentum": self.momentum}

"""SplitMix64 integer mixing, in NumPy and in TensorFlow, for draws that never change.

Label budgets and the labeled sampler rank examples by keys hashed from (seed, ...) with
SplitMix64 (Steele, Lea and Flood, 2014), a bijection on 64-bit integers. Unlike a random
generator's stream, this rule is fixed arithmetic: the same seed selects the same examples
with any NumPy or TensorFlow version, on any machine, in Python or inside a tf.data graph.
The two implementations below agree bit for bit (tests/data/test_data_labeled_stream.py).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

_GOLDEN = 0x9E3779B97F4A7C15
_MUL_1 = 0xBF58476D1CE4E5B9
_MUL_2 = 0x94D049BB133111EB

# Salts that keep the hash streams of different uses apart for the same seed.
SALT_BUDGET = 0x6C616265  # ranking of examples within a class for label budgets
SALT_BUDGET_CLASSES = 0x636C6173  # which classes get one extra label under `fraction`
SALT_CLASS_ORDER = 0x6F726465  # the sampler's round-robin order of classes
SALT_CLASS_PASS = 0x70617373  # the sampler's permutation of a class on each pass


def seed_to_uint64(seed: int) -> np.uint64:
    """A Python int seed (any sign or size) as a uint64, modulo 2**64."""
    return np.uint64(int(seed) % 2**64)


def splitmix64(x) -> np.ndarray:
    """SplitMix64 of a uint64 array (wrapping arithmetic), element-wise."""
    z = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(_GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_MUL_1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_MUL_2)
    return z ^ (z >> np.uint64(31))


def stream_base(seed: int, salt: int) -> np.uint64:
    """The uint64 starting point of one salted hash stream of `seed`."""
    return splitmix64(np.array([seed_to_uint64(seed) ^ np.uint64(salt)], dtype=np.uint64))[0]


def splitmix64_tf(x: tf.Tensor) -> tf.Tensor:
    """SplitMix64 of a uint64 tensor; the graph twin of `splitmix64`."""

    def shift(z, bits):
        return tf.bitwise.right_shift(z, tf.constant(bits, tf.uint64))

    z = x + tf.constant(_GOLDEN, tf.uint64)
    z = tf.bitwise.bitwise_xor(z, shift(z, 30)) * tf.constant(_MUL_1, tf.uint64)
    z = tf.bitwise.bitwise_xor(z, shift(z, 27)) * tf.constant(_MUL_2, tf.uint64)
    return tf.bitwise.bitwise_xor(z, shift(z, 31))


def as_uint64(x: tf.Tensor) -> tf.Tensor:
    """An int64 tensor's bits as uint64 (negative values wrap, as in NumPy)."""
    return tf.bitcast(tf.cast(x, tf.int64), tf.uint64)


def sortable(keys: tf.Tensor) -> tf.Tensor:
    """uint64 keys as non-negative int64 (their top 63 bits), which tf.argsort orders safely."""
    return tf.bitcast(tf.bitwise.right_shift(keys, tf.constant(1, tf.uint64)), tf.int64)

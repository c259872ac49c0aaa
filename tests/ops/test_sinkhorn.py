"""Sinkhorn-Knopp against SwAV's algorithm in NumPy and its marginals."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.ops import sinkhorn


def reference_sinkhorn(scores, num_iters, epsilon):
    """The official loop, written out in float64."""
    q = np.exp(scores.astype(np.float64) / epsilon).T  # K x B
    num_prototypes, batch = q.shape
    q /= q.sum()
    for _ in range(num_iters):
        q /= q.sum(axis=1, keepdims=True)
        q /= num_prototypes
        q /= q.sum(axis=0, keepdims=True)
        q /= batch
    return (q * batch).T


def scores(batch=12, prototypes=5, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((batch, 8))
    c = rng.standard_normal((prototypes, 8))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    return (z @ c.T).astype("float32")


@pytest.mark.parametrize("num_iters,epsilon", [(3, 0.05), (1, 0.5), (0, 0.1)])
def test_matches_the_official_loop(num_iters, epsilon):
    s = scores()
    q = sinkhorn(tf.constant(s), num_iters, epsilon).numpy()
    np.testing.assert_allclose(q, reference_sinkhorn(s, num_iters, epsilon),
                               rtol=1e-4, atol=1e-6)


def test_marginals():
    s = scores(batch=20, prototypes=4, seed=1)
    q = sinkhorn(tf.constant(s), num_iters=100, epsilon=0.1).numpy()
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(q.sum(axis=0), 20 / 4, atol=1e-3)
    assert np.all(q >= 0)


def test_large_scores_give_no_nan():
    s = scores(seed=2) * 1000.0
    q = sinkhorn(tf.constant(s), 3, 0.05).numpy()
    assert np.all(np.isfinite(q))
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-5)


def test_half_precision_input_is_computed_in_float32():
    s = scores(seed=3)
    q = sinkhorn(tf.constant(s, tf.float16), 3, 0.05)
    assert q.dtype == tf.float32
    assert np.all(np.isfinite(q.numpy()))
    np.testing.assert_allclose(
        q.numpy(), reference_sinkhorn(s.astype(np.float16), 3, 0.05), rtol=1e-3, atol=1e-5)


def test_no_gradient_flows():
    s = tf.constant(scores(seed=4))
    with tf.GradientTape() as tape:
        tape.watch(s)
        q = sinkhorn(s)
    assert tape.gradient(q, s) is None

"""MIRA's pseudo-labels against the official fixed-point loop in NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.ops import mira_assign


def reference_mira(logits, beta, num_iters):
    """The official iteration, written out in float64 (methods-b.md, MIRA (a))."""
    s = logits.astype(np.float64) / (1 - beta)
    k = np.exp(s - s.max(axis=1, keepdims=True))
    k /= k.sum(axis=1, keepdims=True)
    batch = k.shape[0]
    v = (k.sum(axis=0) / batch) ** (1 - beta)
    for _ in range(num_iters):
        w = v ** (-beta / (1 - beta))
        v = ((k / (w * k).sum(axis=1, keepdims=True)).sum(axis=0) / batch) ** (1 - beta)
    p = v ** (-beta / (1 - beta)) * k
    return p / p.sum(axis=1, keepdims=True)


def logits(batch=16, prototypes=6, temperature=0.225, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((batch, 8))
    c = rng.standard_normal((prototypes, 8))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    return (z @ c.T / temperature).astype("float32")


@pytest.mark.parametrize("beta,num_iters", [(0.75, 30), (2 / 3, 5), (0.3, 0)])
def test_matches_the_official_loop(beta, num_iters):
    x = logits()
    p = mira_assign(tf.constant(x), beta, num_iters).numpy()
    np.testing.assert_allclose(p, reference_mira(x, beta, num_iters), rtol=1e-4, atol=1e-6)


def test_beta_may_be_a_scheduled_tensor():
    x = logits(seed=4)
    p = mira_assign(tf.constant(x), tf.Variable(0.7), 10).numpy()
    np.testing.assert_allclose(p, reference_mira(x, 0.7, 10), rtol=1e-4, atol=1e-6)


def test_reaches_a_fixed_point_with_unit_rows():
    x = logits(seed=1)
    p = mira_assign(tf.constant(x), 0.75, 200).numpy()
    once_more = mira_assign(tf.constant(x), 0.75, 201).numpy()
    np.testing.assert_allclose(p, once_more, atol=1e-5)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_regularisation_balances_the_batch():
    # With beta = 0 the labels are the teacher's softmax; beta > 0 evens out
    # how much of the batch each prototype receives.
    x = logits(seed=2)
    plain = mira_assign(tf.constant(x), 0.0, 30).numpy()
    np.testing.assert_allclose(plain, tf.nn.softmax(x).numpy(), atol=1e-6)
    balanced = mira_assign(tf.constant(x), 0.75, 30).numpy()
    assert balanced.sum(axis=0).std() < plain.sum(axis=0).std()


def test_extreme_logits_and_half_precision_stay_finite():
    x = logits(seed=3) * 100.0
    p = mira_assign(tf.constant(x, tf.float16), 0.9, 30)
    assert p.dtype == tf.float32
    assert np.all(np.isfinite(p.numpy()))
    np.testing.assert_allclose(p.numpy().sum(axis=1), 1.0, atol=1e-5)


def test_rejects_beta_of_one():
    with pytest.raises(ValueError, match="beta"):
        mira_assign(tf.zeros([2, 2]), 1.0, 3)

"""Every loss against a plain NumPy version written here."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import losses


def _normalize(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _log_softmax(logits):
    logits = logits - logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def _reference_nt_xent(a, b, temperature):
    z = _normalize(np.concatenate([a, b]))
    n = len(a)
    sim = z @ z.T / temperature
    np.fill_diagonal(sim, -np.inf)
    positives = np.concatenate([np.arange(n, 2 * n), np.arange(n)])
    return -_log_softmax(sim)[np.arange(2 * n), positives].mean()


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_matches_numpy(temperature):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    loss = losses.nt_xent_loss(a, b, a, b, 0, temperature=temperature)
    np.testing.assert_allclose(loss, _reference_nt_xent(a, b, temperature), rtol=1e-5)


def test_nt_xent_local_rows_average_to_global_loss():
    # Two "replicas" of 3 rows each, each with the global negatives: the mean
    # of their losses must equal the loss over all 6 rows.
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    parts = [losses.nt_xent_loss(a[s:s + 3], b[s:s + 3], a, b, s, temperature=0.2)
             for s in (0, 3)]
    np.testing.assert_allclose(np.mean(parts), _reference_nt_xent(a, b, 0.2), rtol=1e-5)


def test_info_nce_matches_numpy():
    rng = np.random.default_rng(2)
    q, k = rng.normal(size=(4, 8)), rng.normal(size=(4, 8))
    queue = _normalize(rng.normal(size=(10, 8)))
    logits = np.concatenate([
        (_normalize(q) * _normalize(k)).sum(1, keepdims=True),
        _normalize(q) @ queue.T], axis=1) / 0.2
    expected = -_log_softmax(logits)[:, 0].mean()
    loss = losses.info_nce_loss(q, k, queue.astype("float32"), temperature=0.2)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_non_parametric_softmax_matches_numpy():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(5, 6))
    bank = _normalize(rng.normal(size=(20, 6))).astype("float32")
    indices = np.array([3, 0, 19, 7, 7])
    logits = _normalize(features) @ bank.T / 0.1
    expected = -_log_softmax(logits)[np.arange(5), indices].mean()
    loss = losses.non_parametric_softmax_loss(features, bank, indices, temperature=0.1)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_regression_loss_matches_numpy_and_blocks_target_gradient():
    rng = np.random.default_rng(4)
    p = tf.Variable(rng.normal(size=(4, 3)).astype("float32"))
    z = tf.Variable(rng.normal(size=(4, 3)).astype("float32"))
    expected = (2 - 2 * (_normalize(p.numpy()) * _normalize(z.numpy())).sum(1)).mean()
    with tf.GradientTape() as tape:
        loss = losses.normalized_regression_loss(p, z)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    grad_p, grad_z = tape.gradient(loss, [p, z])
    assert grad_z is None
    assert np.abs(grad_p.numpy()).sum() > 0
    np.testing.assert_allclose(losses.normalized_regression_loss(p, 3.0 * p), 0.0, atol=1e-6)


def test_info_nce_extra_negatives_match_numpy_and_unused_ones_drop_out():
    # BG_Swaps: one more negative per row, seen by that row only.
    rng = np.random.default_rng(3)
    q, k, extra = (rng.normal(size=(4, 8)) for _ in range(3))
    queue = _normalize(rng.normal(size=(10, 8)))
    used = np.array([True, False, True, True])
    logits = np.concatenate([
        (_normalize(q) * _normalize(k)).sum(1, keepdims=True),
        _normalize(q) @ queue.T,
        (_normalize(q) * _normalize(extra)).sum(1, keepdims=True)], axis=1) / 0.2
    per_row = -_log_softmax(logits)[:, 0]
    without_extra = -_log_softmax(logits[:, :-1])[:, 0]
    expected = np.where(used, per_row, without_extra).mean()
    loss = losses.info_nce_loss(q, k, queue.astype("float32"), temperature=0.2,
                                extra_negatives=extra, extra_negative_used=tf.constant(used))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # The extra negatives are targets: no gradient flows into them.
    extra_tensor = tf.constant(extra, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(extra_tensor)
        value = losses.info_nce_loss(q, k, queue.astype("float32"), temperature=0.2,
                                     extra_negatives=extra_tensor)
    assert tape.gradient(value, extra_tensor) is None

"""mean_shift_loss against a NumPy version of MSF's loop over neighbours."""

import numpy as np
import tensorflow as tf

from keras_ssl import losses


def _normalize(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _reference(predictions, bank, indices, weights=None):
    p, m = _normalize(predictions), _normalize(bank)
    rows = []
    for i in range(len(p)):
        distances = np.array([np.sum((p[i] - m[j]) ** 2) for j in indices[i]])
        w = np.ones(len(distances)) if weights is None else weights[i]
        rows.append(np.sum(w * distances) / np.sum(w))
    return np.mean(rows)


def test_matches_numpy_mean_over_neighbours():
    rng = np.random.default_rng(0)
    predictions, bank = rng.normal(size=(5, 6)), rng.normal(size=(11, 6))
    indices = rng.integers(0, 11, size=(5, 3))
    loss = losses.mean_shift_loss(predictions, bank, indices)
    np.testing.assert_allclose(loss, _reference(predictions, bank, indices), rtol=1e-5)


def test_weights_drop_slots():
    rng = np.random.default_rng(1)
    predictions, bank = rng.normal(size=(4, 5)), rng.normal(size=(9, 5))
    indices = rng.integers(0, 9, size=(4, 3))
    weights = np.array([[1, 1, 1], [1, 0, 0], [1, 1, 0], [0, 1, 0]], "float32")
    loss = losses.mean_shift_loss(predictions, bank, indices, weights)
    np.testing.assert_allclose(loss, _reference(predictions, bank, indices, weights),
                               rtol=1e-5)
    # A zero-weight slot may point anywhere without changing the loss.
    moved = indices.copy()
    moved[1, 1:] = 0
    np.testing.assert_allclose(losses.mean_shift_loss(predictions, bank, moved, weights),
                               loss, rtol=1e-6)


def test_one_neighbour_equal_to_the_target_is_byol():
    rng = np.random.default_rng(2)
    predictions, targets = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    indices = np.arange(6)[:, None]
    np.testing.assert_allclose(
        losses.mean_shift_loss(predictions, targets, indices),
        losses.normalized_regression_loss(predictions, targets), rtol=1e-6)


def test_range_and_gradient_only_to_predictions():
    rng = np.random.default_rng(3)
    predictions = tf.Variable(rng.normal(size=(3, 4)).astype("float32"))
    bank = tf.Variable(rng.normal(size=(7, 4)).astype("float32"))
    indices = rng.integers(0, 7, size=(3, 2))
    with tf.GradientTape() as tape:
        loss = losses.mean_shift_loss(predictions, bank, indices)
    prediction_grad, bank_grad = tape.gradient(loss, [predictions, bank])
    assert 0.0 <= float(loss) <= 4.0
    assert bank_grad is None
    assert np.all(np.isfinite(prediction_grad.numpy()))
    assert np.any(prediction_grad.numpy() != 0)

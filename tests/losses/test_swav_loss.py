"""SwAV's swapped-prediction loss against a NumPy transcription of its training loop."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import losses


def _log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def _reference_swav(scores, codes, assign_crops, temperature):
    # The loop of main_swav.py: for each assignment crop, the other crops'
    # cross-entropies, averaged over those crops, then over assignment crops.
    loss = 0.0
    for q, crop in zip(codes, assign_crops):
        subloss = 0.0
        for v in np.delete(np.arange(len(scores)), crop):
            subloss -= np.mean(np.sum(q * _log_softmax(scores[v] / temperature), axis=1))
        loss += subloss / (len(scores) - 1)
    return loss / len(assign_crops)


def _random_codes(rng, shape):
    codes = rng.uniform(size=shape)
    return codes / codes.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("num_crops,temperature", [(2, 0.1), (5, 0.1), (4, 0.5)])
def test_swapped_prediction_matches_numpy(num_crops, temperature):
    rng = np.random.default_rng(num_crops)
    scores = [rng.uniform(-1, 1, size=(6, 7)).astype("float32") for _ in range(num_crops)]
    codes = [_random_codes(rng, (6, 7)).astype("float32") for _ in range(2)]
    loss = losses.swapped_prediction_loss(scores, codes, temperature=temperature)
    np.testing.assert_allclose(loss, _reference_swav(scores, codes, (0, 1), temperature),
                               rtol=1e-5)


def test_other_target_views_are_respected():
    rng = np.random.default_rng(3)
    scores = [rng.normal(size=(4, 5)).astype("float32") for _ in range(4)]
    codes = [_random_codes(rng, (4, 5)).astype("float32")]
    loss = losses.swapped_prediction_loss(scores, codes, temperature=0.1,
                                          target_views=(2,))
    np.testing.assert_allclose(loss, _reference_swav(scores, codes, (2,), 0.1), rtol=1e-5)


def test_local_rows_average_to_the_global_loss():
    # Replicas each average over their rows; the train step averages replicas.
    rng = np.random.default_rng(4)
    scores = [rng.normal(size=(8, 5)).astype("float32") for _ in range(3)]
    codes = [_random_codes(rng, (8, 5)).astype("float32") for _ in range(2)]
    whole = losses.swapped_prediction_loss(scores, codes, temperature=0.1)
    halves = [losses.swapped_prediction_loss([s[rows] for s in scores],
                                             [c[rows] for c in codes], temperature=0.1)
              for rows in (slice(0, 4), slice(4, 8))]
    np.testing.assert_allclose(np.mean(halves), whole, rtol=1e-5)


def test_gradient_reaches_the_scores_but_not_the_codes():
    rng = np.random.default_rng(5)
    scores = [tf.Variable(rng.normal(size=(3, 4)).astype("float32")) for _ in range(3)]
    codes = [tf.Variable(_random_codes(rng, (3, 4)).astype("float32")) for _ in range(2)]
    with tf.GradientTape() as tape:
        loss = losses.swapped_prediction_loss(scores, codes, temperature=0.1)
    score_grads, code_grads = tape.gradient(loss, (scores, codes))
    assert all(g is not None and np.abs(g.numpy()).sum() > 0 for g in score_grads)
    assert all(g is None for g in code_grads)


def test_confident_correct_predictions_give_a_small_loss():
    # Scores pointing at each row's code: the loss tends to 0 as tau -> 0,
    # while uniform scores give log K.
    codes = np.eye(4, dtype="float32")
    sharp = losses.swapped_prediction_loss([codes] * 3, [codes] * 2, temperature=0.01)
    flat = losses.swapped_prediction_loss([np.zeros((4, 4), "float32")] * 3, [codes] * 2,
                                          temperature=0.1)
    assert float(sharp) < 1e-6
    np.testing.assert_allclose(flat, np.log(4.0), rtol=1e-6)


def test_mismatched_targets_raise():
    scores = [np.zeros((2, 3), "float32")] * 3
    with pytest.raises(ValueError, match="target_views"):
        losses.swapped_prediction_loss(scores, [scores[0]], temperature=0.1)

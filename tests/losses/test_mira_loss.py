"""MIRA's loss: the official concatenated form equals swapped_prediction_loss."""

import numpy as np
import pytest

from keras_ssl import losses


def _log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def _reference_mira(student_logits, targets, tau_s):
    # train.py::loss_func: target 0 supervises crops [1:], target 1 crops
    # [0] + [2:]; each term is one mean over the concatenated rows.
    def term(crops, target):
        logits = np.concatenate(crops) / tau_s
        repeated = np.tile(target, (len(crops), 1))
        return -np.mean(np.sum(repeated * _log_softmax(logits), axis=1))

    q = list(student_logits)
    return (term(q[1:], targets[0]) + term(q[:1] + q[2:], targets[1])) / 2


@pytest.mark.parametrize("num_crops", [2, 4])
def test_mira_loss_matches_numpy(num_crops):
    rng = np.random.default_rng(num_crops)
    logits = [rng.uniform(-1, 1, size=(5, 6)).astype("float32") for _ in range(num_crops)]
    targets = [rng.dirichlet(np.ones(6), size=5).astype("float32") for _ in range(2)]
    loss = losses.swapped_prediction_loss(logits, targets, temperature=0.1)
    np.testing.assert_allclose(loss, _reference_mira(logits, targets, 0.1), rtol=1e-5)


def test_soft_target_cross_entropy_matches_numpy():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(4, 3)).astype("float32")
    targets = rng.dirichlet(np.ones(3), size=4).astype("float32")
    expected = -np.mean(np.sum(targets * _log_softmax(logits / 0.2), axis=1))
    np.testing.assert_allclose(
        losses.soft_target_cross_entropy(targets, logits, temperature=0.2), expected,
        rtol=1e-5)


def test_cross_entropy_is_at_least_the_target_entropy():
    # Gibbs' inequality: H(p, q) >= H(p), with equality when q = p.
    rng = np.random.default_rng(8)
    targets = rng.dirichlet(np.ones(5), size=6).astype("float32")
    entropy = -np.mean(np.sum(targets * np.log(targets), axis=1))
    for _ in range(5):
        logits = rng.normal(size=(6, 5)).astype("float32")
        assert float(losses.soft_target_cross_entropy(
            targets, logits, temperature=1.0)) >= entropy - 1e-6
    np.testing.assert_allclose(
        losses.soft_target_cross_entropy(targets, np.log(targets), temperature=1.0),
        entropy, rtol=1e-5)

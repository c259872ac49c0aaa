"""FixMatch's, MixMatch's and HierMatch's losses against NumPy copies of their official code."""

import numpy as np
import tensorflow as tf

from keras_ssl.losses import semi_supervised as losses


def _softmax(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _cross_entropy(logits, labels):
    return -np.log(_softmax(logits)[np.arange(len(labels)), labels])


def test_confidence_masked_cross_entropy_is_fixmatch_unlabeled_term():
    rng = np.random.default_rng(0)
    weak = rng.normal(size=(12, 5)).astype("float32") * 3
    strong = rng.normal(size=(12, 5)).astype("float32")
    threshold = 0.7
    loss, rate = losses.confidence_masked_cross_entropy(weak, strong, threshold)
    # fixmatch.py:113-118: mean over all rows of CE(strong, argmax weak) * mask.
    probabilities = _softmax(weak.astype("float64"))
    mask = probabilities.max(axis=1) >= threshold
    expected = np.mean(_cross_entropy(strong.astype("float64"), probabilities.argmax(1)) * mask)
    assert 0 < mask.sum() < 12
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(rate, mask.mean())


def test_pseudo_labels_pass_no_gradient_to_the_weak_view():
    weak = tf.Variable(np.eye(3, dtype="float32") * 10)
    strong = tf.Variable(np.zeros((3, 3), "float32"))
    with tf.GradientTape() as tape:
        loss, _ = losses.confidence_masked_cross_entropy(weak, strong, 0.5)
    weak_gradient, strong_gradient = tape.gradient(loss, [weak, strong])
    assert weak_gradient is None and np.abs(strong_gradient).sum() > 0


def test_masked_cross_entropy_averages_the_known_rows():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(6, 4)).astype("float32")
    labels = np.array([0, -1, 3, 2, -1, 1])
    known = labels >= 0
    expected = _cross_entropy(logits.astype("float64")[known], labels[known]).mean()
    np.testing.assert_allclose(losses.masked_cross_entropy(logits, labels), expected, rtol=1e-5)
    # A given count divides the sum of the known rows' terms.
    np.testing.assert_allclose(losses.masked_cross_entropy(logits, labels, count=8.0),
                               expected * 4 / 8, rtol=1e-5)
    assert float(losses.masked_cross_entropy(logits, -np.ones(6, int))) == 0.0


def test_guessed_labels_are_the_sharpened_mean_softmax():
    rng = np.random.default_rng(2)
    first, second = (rng.normal(size=(5, 4)).astype("float32") for _ in range(2))
    guess = losses.guess_labels([first, second], temperature=0.5)
    # mixmatch.py:40-50.
    mean = (_softmax(first.astype("float64")) + _softmax(second.astype("float64"))) / 2
    expected = mean ** 2 / (mean ** 2).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(guess, expected, rtol=1e-5)
    np.testing.assert_allclose(losses.sharpen(mean, 1.0), mean, rtol=1e-6)


def test_mixup_mixes_rows_and_targets_with_one_permutation():
    rng = np.random.default_rng(3)
    images = rng.uniform(size=(6, 2, 2, 3)).astype("float32")
    targets = np.eye(6, 4, dtype="float32")
    weights = rng.uniform(0.5, 1.0, size=6).astype("float32")
    permutation = rng.permutation(6)
    mixed_images, mixed_targets = losses.mixup(images, targets, weights, permutation)
    w = weights[:, None, None, None]
    np.testing.assert_allclose(mixed_images, w * images + (1 - w) * images[permutation],
                               rtol=1e-6)
    np.testing.assert_allclose(mixed_targets, weights[:, None] * targets
                               + (1 - weights[:, None]) * targets[permutation], rtol=1e-6)


def _official_mixmatch(logits_x, targets_x, logits_u, targets_u):
    """mixmatch.py:81-84 (and HIERMATCH's SemiLoss, train.py:450-457)."""
    log_p = np.log(_softmax(logits_x))
    labeled = np.mean(-np.sum(targets_x * log_p, axis=1))
    unlabeled = np.mean((_softmax(logits_u) - targets_u) ** 2)
    return labeled, unlabeled


def test_mixmatch_loss_is_the_official_reduction():
    rng = np.random.default_rng(4)
    logits_x, logits_u = rng.normal(size=(4, 5)), rng.normal(size=(8, 5))
    targets_x = _softmax(rng.normal(size=(4, 5)))
    targets_u = _softmax(rng.normal(size=(8, 5)))
    got = losses.mixmatch_loss(*(a.astype("float32") for a in
                                 (logits_x, targets_x, logits_u, targets_u)))
    np.testing.assert_allclose(got, _official_mixmatch(logits_x, targets_x, logits_u, targets_u),
                               rtol=1e-5)


def test_withheld_labeled_rows_count_as_unlabeled_rows():
    # A labeled row whose label is withheld at a level is, in the official
    # partial split, one of that level's unlabeled rows: its term moves to Lu.
    rng = np.random.default_rng(5)
    logits_x, logits_u = rng.normal(size=(5, 3)), rng.normal(size=(6, 3))
    targets_x = _softmax(rng.normal(size=(5, 3)))
    targets_u = _softmax(rng.normal(size=(6, 3)))
    known = np.array([True, False, True, True, False])
    got = losses.mixmatch_loss(*(a.astype("float32") for a in
                                 (logits_x, targets_x, logits_u, targets_u)), known=known)
    expected = _official_mixmatch(logits_x[known], targets_x[known],
                                  np.concatenate([logits_u, logits_x[~known]]),
                                  np.concatenate([targets_u, targets_x[~known]]))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_l2_penalty_is_half_the_squared_norm():
    kernels = [np.arange(6, dtype="float32").reshape(2, 3), np.ones((2, 2, 1), "float32")]
    np.testing.assert_allclose(losses.l2_penalty(kernels), 0.5 * (55 + 4), rtol=1e-6)

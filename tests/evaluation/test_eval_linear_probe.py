import numpy as np
import pytest

from keras_ssl.evaluation import linear_probe
from keras_ssl.evaluation.linear_probe import _lbfgs_probe, _sgd_probe, _standardize


def gaussian_blobs(rng, n, centres):
    labels = rng.integers(0, len(centres), size=n)
    features = centres[labels] + rng.normal(size=(n, centres.shape[1]))
    return features.astype(np.float32), labels


@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    centres = 4.0 * rng.normal(size=(8, 16))
    return (*gaussian_blobs(rng, 800, centres), *gaussian_blobs(rng, 400, centres))


@pytest.mark.parametrize("method", ["sgd", "lbfgs"])
def test_separable_blobs_are_classified(blobs, method):
    result = linear_probe(*blobs, num_classes=8, method=method, epochs=20)
    assert result["top1"] > 0.95
    assert result["top5"] >= result["top1"]


def test_sgd_without_standardisation_still_learns(blobs):
    result = linear_probe(*blobs, num_classes=8, epochs=20, standardize=False, learning_rate=0.05)
    assert result["top1"] > 0.95


def test_lbfgs_two_classes_and_missing_class():
    rng = np.random.default_rng(1)
    centres = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    train_x, train_y = gaussian_blobs(rng, 300, centres[:2])  # class 2 never seen
    test_x, test_y = gaussian_blobs(rng, 100, centres[:2])
    result = linear_probe(train_x, train_y, test_x, test_y, num_classes=3, method="lbfgs")
    assert result["top1"] > 0.95
    # A test example of the unseen class can never be right at top-1.
    unseen = linear_probe(train_x, train_y, test_x[:10], np.full(10, 2), num_classes=3, method="lbfgs")
    assert unseen["top1"] == 0.0


def imbalanced_problem(rng):
    centres = 2.0 * rng.normal(size=(4, 8))
    train_y = np.concatenate([np.zeros(280, np.int64), rng.integers(1, 4, 120)])  # 70% class 0
    train_x = (centres[train_y] + rng.normal(size=(400, 8))).astype(np.float32)
    test_y = np.repeat(np.arange(4), 100)
    test_x = (centres[test_y] + rng.normal(size=(400, 8))).astype(np.float32)
    return train_x, train_y, test_x, test_y


def test_both_solvers_minimise_the_same_regularised_objective():
    # The docstring promises mean CE + weight_decay / 2 * ||W||^2 for both; run
    # full-batch SGD to convergence and compare the logits of L-BFGS, up to the
    # per-row constant that softmax ignores.
    train_x, train_y, _, _ = imbalanced_problem(np.random.default_rng(2))
    train_x, _ = _standardize(train_x, train_x)
    for weight_decay in (1e-2, 1.0):
        _, lbfgs_logits = _lbfgs_probe(train_x, train_y, train_x[:20], weight_decay=weight_decay, max_iter=5000)
        sgd_logits = _sgd_probe(train_x, train_y, train_x[:20], num_classes=4, epochs=300, batch_size=400,
                                learning_rate=0.5, weight_decay=weight_decay, seed=0)
        np.testing.assert_allclose(sgd_logits - sgd_logits.mean(axis=1, keepdims=True),
                                   lbfgs_logits - lbfgs_logits.mean(axis=1, keepdims=True), atol=0.03)


def test_huge_weight_decay_leaves_only_the_undecayed_bias():
    train_x, train_y, test_x, test_y = imbalanced_problem(np.random.default_rng(3))
    weak = linear_probe(train_x, train_y, test_x, test_y, num_classes=4, method="lbfgs")
    # W -> 0 but the bias is not decayed, so every prediction is the majority
    # class 0: a quarter of the balanced test set.
    strong = linear_probe(train_x, train_y, test_x, test_y, num_classes=4, method="lbfgs", weight_decay=1e4)
    assert weak["top1"] > 0.9
    assert strong["top1"] == 0.25


def test_unknown_method_raises(blobs):
    with pytest.raises(ValueError):
        linear_probe(*blobs, num_classes=8, method="adam")

import numpy as np
import pytest

from keras_ssl.evaluation import top_k_accuracy


def test_top_k_matches_explicit_ranking():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 7))
    labels = rng.integers(0, 7, size=50)
    for k in (1, 3, 7):
        ranks = (scores > scores[np.arange(50), labels][:, None]).sum(axis=1)
        assert top_k_accuracy(scores, labels, k=k) == pytest.approx(np.mean(ranks < k))


def test_top_1_equals_argmax_even_with_ties():
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    labels = np.array([1, 2])
    # argmax picks the first of tied classes: 0 and 1, both wrong.
    assert top_k_accuracy(scores, labels, k=1) == 0.0
    assert top_k_accuracy(scores, labels, k=2) == 1.0


def test_k_above_num_classes_counts_everything():
    assert top_k_accuracy(np.zeros((4, 3)), np.array([0, 1, 2, 2]), k=5) == 1.0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        top_k_accuracy(np.zeros((4, 3)), np.zeros(5, np.int64))

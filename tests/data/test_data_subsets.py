"""per_class_subset and long_tail_subset: exact, deterministic counts in stored order."""

import numpy as np
import pytest

from keras_ssl.data import Split, long_tail_counts, long_tail_subset, per_class_subset

CIFAR10_LT_100 = [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]


def _path_split(labels):
    """A streamed-looking split whose path i is "i.jpg", so positions are easy to read back."""
    labels = np.asarray(labels)
    return Split(images=None, paths=[f"{i}.jpg" for i in range(len(labels))], labels=labels)


def _positions(split):
    return np.array([int(p.split(".")[0]) for p in split.paths])


def test_per_class_takes_first_n_of_each_class_in_stored_order():
    labels = np.array([2, 0, 1, 0, 2, 2, 1, 0, 0, 1, 2])
    subset = per_class_subset(_path_split(labels), per_class=2)
    # Class 0 at 1, 3, 7, 8; class 1 at 2, 6, 9; class 2 at 0, 4, 5, 10.
    np.testing.assert_array_equal(_positions(subset), [0, 1, 2, 3, 4, 6])
    np.testing.assert_array_equal(subset.labels, [2, 0, 1, 0, 2, 1])


def test_per_class_is_deterministic_and_keeps_images_aligned():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 200)
    images = np.arange(200, dtype=np.uint8)[:, None, None, None] * np.ones([1, 2, 2, 3], np.uint8)
    split = Split(images=images, paths=None, labels=labels)
    first, second = per_class_subset(split, 7), per_class_subset(split, 7)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(np.bincount(first.labels), [7] * 5)
    # Each kept image is still paired with its own label.
    np.testing.assert_array_equal(labels[first.images[:, 0, 0, 0]], first.labels)


def test_per_class_small_class_gives_all_it_has():
    subset = per_class_subset(_path_split([0, 0, 0, 1]), per_class=2)
    np.testing.assert_array_equal(subset.labels, [0, 0, 1])


def test_subsets_reject_unlabeled_and_bad_sizes():
    with pytest.raises(ValueError, match="labeled"):
        per_class_subset(_path_split([-1, -1]), per_class=1)
    with pytest.raises(ValueError, match="per_class"):
        per_class_subset(_path_split([0, 1]), per_class=0)
    with pytest.raises(ValueError, match="imbalance_ratio"):
        long_tail_subset(_path_split([0, 1]), imbalance_ratio=0.5)


def test_long_tail_counts_cifar10_lt():
    counts = long_tail_counts(num_classes=10, n_max=1000, imbalance_ratio=100)
    assert counts == CIFAR10_LT_100
    assert sum(counts) == 2478
    assert long_tail_counts(10, 500, 10)[-1] == 50
    assert long_tail_counts(1, 7, 100) == [7]


def test_long_tail_subset_takes_first_n_c_of_each_class():
    # 1200 examples of each of 10 classes, interleaved: class c sits at c, c + 10, c + 20, ...
    split = _path_split(np.arange(12000) % 10)
    subset = long_tail_subset(split, imbalance_ratio=100, max_per_class=1000)
    assert len(subset) == 2478
    np.testing.assert_array_equal(np.bincount(subset.labels), CIFAR10_LT_100)
    positions = _positions(subset)
    for c, n_c in enumerate(CIFAR10_LT_100):
        np.testing.assert_array_equal(positions[subset.labels == c], c + 10 * np.arange(n_c))


def test_long_tail_default_n_max_is_smallest_class():
    labels = np.repeat([0, 1, 2], [50, 40, 30])
    subset = long_tail_subset(_path_split(labels), imbalance_ratio=10)
    # n_max = 30: 30, floor(30 / sqrt(10)) = 9, floor(30 / 10) = 3.
    np.testing.assert_array_equal(np.bincount(subset.labels), [30, 9, 3])

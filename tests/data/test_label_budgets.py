"""Label budgets: per class, by fraction, from an index file; deterministic for a seed."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.data import (
    LabeledStream,
    labeled_indices,
    labeled_subset,
    read_label_indices,
    write_label_indices,
)
from keras_ssl.data.mixing import splitmix64, splitmix64_tf
from tests.data.labeled_splits import path_split, imbalanced_labels

# ---------------------------------------------------------------------------- label budgets


def test_labels_per_class_counts_seeds_and_nesting():
    split = path_split(imbalanced_labels())
    chosen = labeled_indices(split, labels_per_class=4, seed=0)
    assert chosen.dtype == np.int64 and np.all(np.diff(chosen) > 0)  # sorted, no repeats
    np.testing.assert_array_equal(np.bincount(split.labels[chosen]), [4] * 5)  # never a -1 row
    np.testing.assert_array_equal(chosen, labeled_indices(split, labels_per_class=4, seed=0))
    other = labeled_indices(split, labels_per_class=4, seed=1)
    assert not np.array_equal(chosen, other)
    np.testing.assert_array_equal(np.bincount(split.labels[other]), [4] * 5)
    # Keys are per example, so a seed's small budget lies inside its larger one.
    assert set(chosen) <= set(labeled_indices(split, labels_per_class=10, seed=0))
    # Not simply the first examples of each class (per_class_subset's rule).
    first = np.concatenate([np.flatnonzero(split.labels == c)[:4] for c in range(5)])
    assert not np.array_equal(chosen, np.sort(first))

    subset = labeled_subset(split, labels_per_class=4, seed=0)
    assert subset.paths == [f"{i}.jpg" for i in chosen]
    np.testing.assert_array_equal(subset.labels, split.labels[chosen])


def test_fraction_is_class_balanced_with_a_seeded_remainder():
    split = path_split(imbalanced_labels())  # 124 labeled examples
    chosen = labeled_indices(split, fraction=0.1, seed=0)
    counts = np.bincount(split.labels[chosen])
    assert counts.sum() == 12  # round(0.1 * 124), the 6 unlabeled rows not counted
    assert sorted(counts) == [2, 2, 2, 3, 3]  # 12 // 5 each, 12 % 5 classes get one more
    np.testing.assert_array_equal(chosen, labeled_indices(split, fraction=0.1, seed=0))
    extras = {tuple(np.bincount(split.labels[labeled_indices(split, fraction=0.1, seed=s)]))
              for s in range(8)}
    assert len(extras) > 1  # the classes that get the remainder depend on the seed
    balanced = path_split(np.arange(200) % 10)
    quarter = labeled_indices(balanced, fraction=0.25)
    np.testing.assert_array_equal(np.bincount(balanced.labels[quarter]), [5] * 10)


def test_budget_errors():
    split = path_split(imbalanced_labels())
    message = r"labels_per_class=13 asks for 13 labels of class 4, which has only 12"
    with pytest.raises(ValueError, match=message):
        labeled_indices(split, labels_per_class=13)
    with pytest.raises(ValueError, match=r"fraction=0.6 asks for 1[45] labels of class 4, which has only 12"):
        labeled_indices(split, fraction=0.6)
    with pytest.raises(ValueError, match="fewer than one for each of the 5 classes"):
        labeled_indices(split, fraction=0.01)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        labeled_indices(split, fraction=1.5)
    with pytest.raises(ValueError, match="exactly one label budget"):
        labeled_indices(split)
    with pytest.raises(ValueError, match="exactly one label budget"):
        labeled_indices(split, labels_per_class=2, fraction=0.1)
    with pytest.raises(ValueError, match="positive integer"):
        labeled_indices(split, labels_per_class=0)
    with pytest.raises(ValueError, match="every example of the split is unlabeled"):
        labeled_indices(path_split([-1, -1]), labels_per_class=1)
    with pytest.raises(ValueError, match=r"Label index 130 is out of range: the split has 130 examples"):
        labeled_indices(split, indices=[0, 130])
    with pytest.raises(ValueError, match="Label index -1 is out of range"):
        labeled_indices(split, indices=[-1, 3])
    with pytest.raises(ValueError, match="Label index 3 is listed more than once"):
        labeled_indices(split, indices=[3, 5, 3])
    unlabeled_row = int(np.flatnonzero(split.labels < 0)[0])
    with pytest.raises(ValueError, match=f"Label index {unlabeled_row} names an unlabeled"):
        labeled_indices(split, indices=[unlabeled_row])


def test_index_file_round_trip(tmp_path):
    split = path_split(imbalanced_labels())
    chosen = labeled_indices(split, labels_per_class=3, seed=7)
    shuffled = np.random.default_rng(1).permutation(chosen)
    path = tmp_path / "labels.txt"
    write_label_indices(path, shuffled, header="15 labels\nseed 7")
    text = path.read_text()
    assert text.startswith("# 15 labels\n# seed 7\n") and text.count("\n") == 17
    np.testing.assert_array_equal(read_label_indices(path), shuffled)  # file order is kept
    np.testing.assert_array_equal(read_label_indices(str(path), num_examples=len(split)), shuffled)
    # As a budget, the file gives the same set (sorted) as the draw that wrote it.
    np.testing.assert_array_equal(labeled_indices(split, indices=str(path)), chosen)
    np.testing.assert_array_equal(labeled_subset(split, indices=path).labels, split.labels[chosen])
    stream = LabeledStream.from_budget(split, batch_size=5, indices=path)
    np.testing.assert_array_equal(stream.indices, chosen)


@pytest.mark.parametrize(
    "content, message",
    [
        ("3\n4\nfive\n", r"line 3: 'five' is not a dataset index"),
        ("3\n\n-4\n", r"line 3: '-4' is not a dataset index"),
        ("# header\n2.5\n", r"line 2: '2.5' is not a dataset index"),
        ("1 2\n", r"line 1: '1 2' is not a dataset index"),
        ("1\n2\n1\n", r"line 3: index 1 repeats line 1"),
        ("1\n200\n", r"line 2: index 200 is out of range for a split of 130 examples"),
        ("# only a comment\n\n", "lists no indices"),
    ],
)
def test_index_file_errors_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad_labels.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        read_label_indices(path, num_examples=130)
    assert "bad_labels.txt" in str(error.value)
    with pytest.raises(ValueError, match=message):  # the same message through a budget
        labeled_indices(path_split(imbalanced_labels()), indices=str(path))


def test_index_file_missing_and_bad_writes(tmp_path):
    with pytest.raises(ValueError, match="missing.txt' does not exist"):
        read_label_indices(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="non-negative"):
        write_label_indices(tmp_path / "out.txt", [1, -2])
    with pytest.raises(ValueError, match="more than once"):
        write_label_indices(tmp_path / "out.txt", [1, 2, 1])


def test_splitmix64_numpy_and_tensorflow_agree():
    values = np.array([0, 1, 2, 12345, 2**32 + 7, 2**63, 2**64 - 1], dtype=np.uint64)
    np.testing.assert_array_equal(splitmix64(values), splitmix64_tf(tf.constant(values)).numpy())
    # SplitMix64's published first output for state 0 (one golden-ratio step, then mixing).
    assert int(splitmix64(np.array([0], np.uint64))[0]) == 0xE220A8397B1DCDAF

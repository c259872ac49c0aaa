import math

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.evaluation import balanced_label_subset, fine_tune
from keras_ssl.evaluation.semi_supervised import _augment

# Unequal class sizes: 100, 37, 3 and 10 examples.
LABELS = np.random.default_rng(0).permutation(np.repeat(np.arange(4), [100, 37, 3, 10]))


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5, 1.0])
def test_subset_counts_per_class(fraction):
    indices = balanced_label_subset(LABELS, fraction)
    assert indices.dtype == np.int64 and np.all(np.diff(indices) > 0)  # sorted, unique
    for label, size in zip(range(4), (100, 37, 3, 10)):
        expected = max(1, math.floor(fraction * size + 0.5))
        assert np.sum(LABELS[indices] == label) == expected


def test_round_half_up_and_at_least_one():
    labels = np.repeat([0, 1], [5, 1000])
    counts = np.bincount(labels[balanced_label_subset(labels, 0.1)])
    # 0.1 * 5 = 0.5 rounds up to 1 (Python's round gives 0); 0.1 * 1000 = 100.
    np.testing.assert_array_equal(counts, [1, 100])
    assert np.bincount(labels[balanced_label_subset(labels, 0.001)]).tolist() == [1, 1]


def test_subset_is_deterministic_nested_and_seeded():
    small = balanced_label_subset(LABELS, 0.1, seed=3)
    np.testing.assert_array_equal(small, balanced_label_subset(LABELS, 0.1, seed=3))
    assert set(small) <= set(balanced_label_subset(LABELS, 0.5, seed=3))
    assert not np.array_equal(small, balanced_label_subset(LABELS, 0.1, seed=4))
    np.testing.assert_array_equal(balanced_label_subset(LABELS, 1.0), np.arange(len(LABELS)))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_invalid_fraction_raises(fraction):
    with pytest.raises(ValueError):
        balanced_label_subset(LABELS, fraction)


def test_augment_is_a_padded_crop_possibly_flipped():
    image = tf.random.stateless_uniform([6, 6, 3], seed=[1, 2])
    padded = np.pad(image.numpy(), [[4, 4], [4, 4], [0, 0]])
    windows = [padded[r : r + 6, c : c + 6] for r in range(9) for c in range(9)]
    candidates = windows + [w[:, ::-1] for w in windows]
    outputs = set()
    for seed in range(20):
        crop = _augment(image, tf.constant([seed, 0], tf.int64)).numpy()
        assert crop.shape == (6, 6, 3)
        matches = [i for i, c in enumerate(candidates) if np.array_equal(crop, c)]
        assert matches, "output is not a window of the padded image"
        outputs.add(matches[0])
    assert len(outputs) > 1  # the seed changes the crop


def test_fine_tune_learns_and_leaves_encoder_untouched(eval_dataset, tiny_encoder):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=200)
    # Class 0 is reddish, class 1 bluish: separable by the mean colour alone.
    pixels = rng.integers(0, 120, size=(200, 8, 8, 3))
    pixels[labels == 0, ..., 0] += 120
    pixels[labels == 1, ..., 2] += 120
    pixels = pixels.astype(np.uint8)
    test_dataset = eval_dataset(pixels[150:].astype(np.float32) / 255.0, labels[150:], batch_size=16)

    encoder = tiny_encoder()
    before = [w.copy() for w in encoder.get_weights()]
    result = fine_tune(encoder, pixels[:150], labels[:150], test_dataset, num_classes=2,
                       fraction=0.2, epochs=8, batch_size=8, learning_rate=0.05)
    expected_labels = sum(max(1, math.floor(0.2 * n + 0.5)) for n in np.bincount(labels[:150]))
    assert result["num_labels"] == expected_labels
    assert result["top1"] > 0.9
    for old, new in zip(before, encoder.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert len(encoder.layers) == 5  # no head was attached to the original

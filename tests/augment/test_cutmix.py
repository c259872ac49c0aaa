"""CutMix: the official box rule in NumPy, exact pasting and lambda, every mode, seeds."""

import doctest

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.augment import cutmix as cutmix_module
from keras_ssl.augment.cutmix import cutmix, cutmix_boxes, sample_cutmix_boxes
from tests.augment.modes import assert_modes_agree, random_images, seed


def reference_box(mix_ratio, centre_row, centre_column, height, width):
    """clovaai/CutMix-PyTorch `rand_bbox`, rows on the height and columns on the width."""
    cut = np.sqrt(1.0 - mix_ratio)
    cut_height, cut_width = int(height * cut), int(width * cut)
    top = np.clip(centre_row - cut_height // 2, 0, height)
    bottom = np.clip(centre_row + cut_height // 2, 0, height)
    left = np.clip(centre_column - cut_width // 2, 0, width)
    right = np.clip(centre_column + cut_width // 2, 0, width)
    return top, left, bottom - top, right - left


def test_boxes_follow_the_official_rule():
    rng = np.random.default_rng(0)
    height, width = 24, 32
    ratios = np.concatenate([[0.0, 1.0, 0.5, 0.999], rng.uniform(size=200)]).astype("float32")
    rows = rng.integers(0, height, ratios.size).astype("int32")
    columns = rng.integers(0, width, ratios.size).astype("int32")
    rows[:2], columns[:2] = 0, width - 1  # boxes clipped at the corners
    boxes = np.stack([b.numpy() for b in cutmix_boxes(ratios, rows, columns, height, width)], 1)
    expected = np.array([reference_box(float(r), y, x, height, width)
                         for r, y, x in zip(ratios, rows, columns)])
    np.testing.assert_array_equal(boxes, expected)


def _box_mask(top, left, box_height, box_width, height, width):
    rows, columns = np.arange(height)[:, None], np.arange(width)[None, :]
    return ((rows >= top) & (rows < top + box_height)
            & (columns >= left) & (columns < left + box_width))


def test_pastes_exactly_the_drawn_box_and_reports_the_kept_share():
    images, partners = random_images(6, 32, seed=1), random_images(6, 32, seed=2)
    mixed, kept = cutmix(images, partners, seed(3, 4))
    boxes = [b.numpy() for b in sample_cutmix_boxes(seed(3, 4), 6, 32, 32)]
    for i in range(6):
        box = _box_mask(*(b[i] for b in boxes), 32, 32)
        expected = np.where(box[..., None], partners[i], images[i])
        np.testing.assert_array_equal(mixed[i].numpy(), expected)
        # The clipped box's exact share, not the drawn lambda.
        assert kept[i].numpy() == pytest.approx(1.0 - box.mean(), abs=1e-7)
    assert np.any(kept.numpy() < 1.0)


def test_runs_eagerly_in_a_function_and_in_dataset_map():
    images, partners = random_images(4, 16, seed=5), random_images(4, 16, seed=6)
    mixed, kept = assert_modes_agree(lambda a, b, s: cutmix(a, b, s, alpha=0.5),
                                     images, partners, seed(7, 8))
    assert mixed.shape == images.shape and kept.shape == (4,)
    single, single_kept = assert_modes_agree(cutmix, images[0], partners[0], seed(7, 8))
    assert single.shape == images[0].shape and single_kept.shape == ()


def test_same_seed_same_mix_and_another_seed_another():
    images, partners = random_images(8, 16, seed=9), random_images(8, 16, seed=10)
    first, first_kept = cutmix(images, partners, seed(1, 1))
    again, again_kept = cutmix(images, partners, seed(1, 1))
    other, other_kept = cutmix(images, partners, seed(1, 2))
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    np.testing.assert_array_equal(first_kept.numpy(), again_kept.numpy())
    assert not np.array_equal(first_kept.numpy(), other_kept.numpy())


def test_unmixed_rows_are_left_whole():
    images, partners = random_images(4, 16, seed=11), random_images(4, 16, seed=12)
    unmixed = tf.constant([True, False, True, False])
    mixed, kept = cutmix(images, partners, seed(2, 2), unmixed=unmixed)
    np.testing.assert_array_equal(mixed.numpy()[[0, 2]], images[[0, 2]])
    np.testing.assert_array_equal(kept.numpy()[[0, 2]], [1.0, 1.0])
    both, _ = cutmix(images, partners, seed(2, 2))
    np.testing.assert_array_equal(mixed.numpy()[[1, 3]], both.numpy()[[1, 3]])


@pytest.mark.parametrize("alpha", [1.0, 0.4])
def test_kept_share_has_the_distribution_of_the_official_rule(alpha):
    # Beta(alpha, alpha) lambda through the official box rule, simulated in
    # NumPy, against the op's boxes: the means of the kept share agree.
    count, side = 20000, 32
    boxes = sample_cutmix_boxes(seed(5, 5), count, side, side, alpha=alpha)
    kept = 1.0 - (boxes[2] * boxes[3]).numpy() / side**2
    rng = np.random.default_rng(0)
    ratios = rng.beta(alpha, alpha, count)
    centres = rng.integers(0, side, (count, 2))
    reference = np.array([1.0 - (b[2] * b[3]) / side**2 for b in (
        reference_box(r, y, x, side, side) for r, (y, x) in zip(ratios, centres))])
    assert kept.mean() == pytest.approx(reference.mean(), abs=0.01)
    assert kept.std() == pytest.approx(reference.std(), abs=0.01)


def test_docstring_examples():
    result = doctest.testmod(cutmix_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

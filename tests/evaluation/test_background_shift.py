import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_ssl.augment.background import NORMALIZATION_MEAN
from keras_ssl.data import Split, eval_dataset
from keras_ssl.evaluation import (
    KnnMonitor,
    background_shifted_images,
    background_shifted_knn,
    background_shifted_split,
)

NUM_CLASSES = 3


def reference_shift(images, masks, partners):
    """Plain NumPy composite in [0, 255]: own foreground, partner's filled background."""
    images = images.astype(np.float64)
    alpha = (masks.astype(np.float64) / 255.0)[..., None]
    out = np.empty_like(images)
    for i, p in enumerate(partners):
        background_weight = 1.0 - alpha[p]
        total = background_weight.sum()
        if total > 0.5:
            mean = (images[p] * background_weight).sum(axis=(0, 1)) / total
        else:
            mean = np.asarray(NORMALIZATION_MEAN) * 255.0
        filled = images[p] * background_weight + mean * alpha[p]
        out[i] = alpha[i] * images[i] + (1.0 - alpha[i]) * filled
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def hand_masks():
    """Four 5x5 binary masks: a square, a column, a single pixel, a row."""
    masks = np.zeros([4, 5, 5], np.uint8)
    masks[0, 1:4, 1:4] = 255
    masks[1, :, 2] = 255
    masks[2, 2, 2] = 255
    masks[3, 0, :] = 255
    return masks


@pytest.fixture
def small_images():
    return np.random.default_rng(0).integers(0, 256, size=[4, 5, 5, 3], dtype=np.uint8)


def test_paste_matches_numpy_reference(small_images):
    masks = hand_masks()
    shifted, partners = background_shifted_images(small_images, masks, seed=3)
    assert shifted.dtype == np.uint8 and shifted.shape == small_images.shape
    expected = reference_shift(small_images, masks, partners)
    # float32 against float64 may round a .5 the other way; nothing more.
    assert np.abs(shifted.astype(int) - expected.astype(int)).max() <= 1
    assert np.mean(shifted == expected) > 0.98
    # Foreground pixels are the image's own, exactly.
    foreground = masks == 255
    assert np.array_equal(shifted[foreground], small_images[foreground])
    # Background pixels outside the partner's foreground are the partner's, exactly.
    for i, p in enumerate(partners):
        plain = (masks[i] == 0) & (masks[p] == 0)
        assert np.array_equal(shifted[i][plain], small_images[p][plain])


def test_accepts_tensors(small_images):
    masks = hand_masks()
    from_numpy, partners = background_shifted_images(small_images, masks, seed=1)
    from_tensors, tensor_partners = background_shifted_images(
        tf.constant(small_images), tf.constant(masks), seed=1)
    assert np.array_equal(from_numpy, from_tensors)
    assert np.array_equal(partners, tensor_partners)


def test_all_foreground_masks_leave_images_unchanged(small_images):
    masks = np.full([4, 5, 5], 255, np.uint8)
    shifted, _ = background_shifted_images(small_images, masks, seed=0)
    assert np.array_equal(shifted, small_images)


def test_all_background_mask_gives_partners_background_only_image(small_images):
    masks = hand_masks()
    masks[0] = 0  # image 0 keeps nothing of its own
    shifted, partners = background_shifted_images(small_images, masks, seed=5)
    p = partners[0]
    partner_foreground = masks[p] == 255
    # Where the partner's object was: one flat colour, the mean of its background.
    filled = shifted[0][partner_foreground]
    expected_colour = small_images[p][~partner_foreground].astype(np.float64).mean(axis=0)
    assert np.all(filled == filled[0])
    assert np.abs(filled[0] - expected_colour).max() <= 0.5 + 1e-6
    # Everywhere else: the partner's own background pixels.
    assert np.array_equal(shifted[0][~partner_foreground], small_images[p][~partner_foreground])


def test_partners_are_a_derangement_and_seeded():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=[20, 4, 4, 3], dtype=np.uint8)
    masks = (rng.uniform(size=[20, 4, 4]) > 0.5).astype(np.uint8) * 255
    shifted, partners = background_shifted_images(images, masks, seed=7)
    assert sorted(partners.tolist()) == list(range(20))
    assert not np.any(partners == np.arange(20))
    again, again_partners = background_shifted_images(images, masks, seed=7)
    assert np.array_equal(shifted, again) and np.array_equal(partners, again_partners)
    _, other_partners = background_shifted_images(images, masks, seed=8)
    assert not np.array_equal(partners, other_partners)
    assert not np.any(other_partners == np.arange(20))


def test_blocks_do_not_change_the_result(monkeypatch):
    # Partners cross block boundaries; a block size of 3 must give what one block does.
    from keras_ssl.evaluation import background_shift

    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=[10, 4, 4, 3], dtype=np.uint8)
    masks = (rng.uniform(size=[10, 4, 4]) > 0.5).astype(np.uint8) * 255
    whole, partners = background_shifted_images(images, masks, seed=4)
    monkeypatch.setattr(background_shift, "_BLOCK", 3)
    blocked, blocked_partners = background_shifted_images(images, masks, seed=4)
    assert np.array_equal(whole, blocked) and np.array_equal(partners, blocked_partners)
    assert np.abs(whole.astype(int) - reference_shift(images, masks, partners).astype(int)).max() <= 1


def test_one_image_is_refused():
    with pytest.raises(ValueError, match="at least 2"):
        background_shifted_images(np.zeros([1, 4, 4, 3], np.uint8), np.zeros([1, 4, 4], np.uint8))


def test_split_keeps_labels_and_is_in_memory(small_images):
    split = Split(images=small_images, paths=None, labels=[2, 0, 1, 1])
    shifted = background_shifted_split(split, hand_masks(), seed=3)
    assert shifted.paths is None and shifted.images.dtype == np.uint8
    assert shifted.images.shape == small_images.shape
    assert shifted.labels.tolist() == [2, 0, 1, 1]
    expected, _ = background_shifted_images(small_images, hand_masks(), seed=3)
    assert np.array_equal(shifted.images, expected)
    assert np.array_equal(split.images, small_images)  # the input split is untouched


def test_streamed_split_is_read_at_image_size(tmp_path, small_images):
    paths = []
    for i, image in enumerate(small_images):
        path = str(tmp_path / f"{i}.png")
        Image.fromarray(image).save(path)
        paths.append(path)
    streamed = Split(images=None, paths=paths, labels=[0, 1, 2, 0])
    shifted = background_shifted_split(streamed, hand_masks(), seed=3, image_size=5)
    assert shifted.paths is None and shifted.labels.tolist() == [0, 1, 2, 0]
    # PNG is lossless and no resize happens at the stored size: same as in memory.
    expected, _ = background_shifted_images(small_images, hand_masks(), seed=3)
    assert np.array_equal(shifted.images, expected)


@pytest.mark.parametrize(
    "mask_shape, wrong",
    [((3, 5, 5), "count"), ((4, 6, 6), "side")],
)
def test_mismatched_masks_name_both_shapes(small_images, mask_shape, wrong):
    split = Split(images=small_images, paths=None, labels=[0, 1, 2, 0])
    with pytest.raises(ValueError) as error:
        background_shifted_split(split, np.zeros(mask_shape, np.uint8))
    message = str(error.value)
    assert str(mask_shape) in message
    if wrong == "side":
        assert str(small_images.shape) in message
    else:
        assert "4 images" in message


@pytest.fixture
def knn_setup(tiny_encoder):
    rng = np.random.default_rng(0)

    def make(n):
        labels = rng.integers(0, NUM_CLASSES, size=n)
        # Class-dependent brightness, so the kNN has something to find.
        images = rng.uniform(0, 150, size=[n, 8, 8, 3]) + 50 * labels[:, None, None, None]
        return Split(images=images.astype(np.uint8), paths=None, labels=labels)

    train, test = make(24), make(12)
    bank = eval_dataset(train, batch_size=8)
    return tiny_encoder(image_size=8), bank, test


def test_knn_is_a_fraction(knn_setup):
    encoder, bank, test = knn_setup
    masks = np.zeros([12, 8, 8], np.uint8)
    masks[:, 2:6, 2:6] = 255
    shifted = background_shifted_split(test, masks, seed=0)
    top1 = background_shifted_knn(encoder, bank, shifted, num_classes=NUM_CLASSES, k=5)
    assert isinstance(top1, float) and 0.0 <= top1 <= 1.0


def test_knn_with_all_foreground_masks_equals_plain_knn(knn_setup):
    encoder, bank, test = knn_setup
    shifted = background_shifted_split(test, np.full([12, 8, 8], 255, np.uint8), seed=0)
    assert np.array_equal(shifted.images, test.images)
    top1 = background_shifted_knn(encoder, bank, shifted, num_classes=NUM_CLASSES, batch_size=5)
    # The monitor with its own defaults (k, temperature) on the unshifted split.
    monitor = KnnMonitor(encoder, bank, eval_dataset(test, batch_size=7), NUM_CLASSES)
    assert top1 == monitor.evaluate()["top1"]

"""FixMatch's RandAugment ops against NumPy copies of PIL's rules; Cutout, the weak view, recipes."""

import doctest

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.augment import randaugment as ra
from keras_ssl.augment.recipes import fixmatch_views, get_recipe, mixmatch_views
from tests.augment.modes import assert_modes_agree


def _images(batch=4, size=8, seed=0):
    # On the uint8 grid, as the official ops see them (PIL images).
    pixels = np.random.default_rng(seed).integers(0, 256, size=(batch, size, size, 3))
    return (pixels / 255.0).astype("float32")


def _op(name, images, level, sign=1.0):
    batch = images.shape[0]
    return ra.apply_op(tf.constant(images), tf.fill([batch], ra.OPS.index(name)),
                       tf.fill([batch], level), tf.fill([batch], sign)).numpy()


def test_solarize_and_posterize_follow_pil():
    images = _images()
    pixels = np.round(images * 255)
    for level in (1, 5, 9):
        threshold = 256 - int(level * 256 / 10)
        expected = np.where(pixels >= threshold, 255 - pixels, pixels) / 255
        np.testing.assert_allclose(_op("solarize", images, level), expected, atol=1e-6)
        bits = 4 - int(level * 4 / 10)
        mask = ~(2 ** (8 - bits) - 1) & 0xFF
        expected = (pixels.astype(np.int64) & mask) / 255
        np.testing.assert_allclose(_op("posterize", images, level), expected, atol=1e-6)


def _pil_equalize(channel):
    """ImageOps.equalize's lookup table for one uint8 channel."""
    histogram = np.bincount(channel.ravel(), minlength=256)
    present = histogram[histogram > 0]
    if len(present) <= 1:
        return channel
    step = (present.sum() - present[-1]) // 255
    if not step:
        return channel
    lut, n = [], step // 2
    for i in range(256):
        lut.append(min(n // step, 255))
        n += histogram[i]
    return np.array(lut)[channel]


def test_equalize_and_auto_contrast_follow_pil():
    images = _images(size=16)
    images[1, ..., 2] = 128 / 255  # a flat channel is left as it is
    pixels = np.round(images * 255).astype(np.int64)
    expected = np.stack([np.stack([_pil_equalize(pixels[b, ..., c]) for c in range(3)], -1)
                         for b in range(len(images))]) / 255
    np.testing.assert_allclose(_op("equalize", images, 5), expected, atol=1e-6)
    stretched = _op("auto_contrast", images, 5)
    np.testing.assert_allclose(stretched[1, ..., 2], 128 / 255, atol=1e-6)
    np.testing.assert_allclose(stretched[0].min(axis=(0, 1)), 0.0, atol=1e-6)
    np.testing.assert_allclose(stretched[0].max(axis=(0, 1)), 1.0, atol=1e-6)
    low, high = pixels[0].min(axis=(0, 1)), pixels[0].max(axis=(0, 1))
    np.testing.assert_allclose(stretched[0], np.floor((pixels[0] - low) * 255 / (high - low))
                               / 255, atol=1e-6)


def test_enhancers_blend_with_their_degenerate_image():
    images = _images()
    assert ra.enhancer_factor(5).numpy() == pytest.approx(1.0)
    for name in ("color", "contrast", "brightness", "sharpness"):
        np.testing.assert_allclose(_op(name, images, 5), images, atol=1e-6, err_msg=name)
    factor = ra.enhancer_factor(1).numpy()  # 0.28
    np.testing.assert_allclose(_op("brightness", images, 1), images * factor, atol=1e-6)
    gray = images @ np.array([0.2989, 0.587, 0.114], "float32")
    np.testing.assert_allclose(_op("color", images, 1),
                               np.clip(gray[..., None] + factor * (images - gray[..., None]),
                                       0, 1), atol=1e-5)
    sharp = _op("sharpness", images, 9)
    np.testing.assert_allclose(sharp[:, 0], images[:, 0], atol=1e-6)  # PIL keeps the border


def test_geometric_ops_shift_shear_rotate_with_grey_fill():
    images = _images(size=32)
    shifted = _op("translate_x", images, 3)
    np.testing.assert_allclose(shifted[:, :, :-3], images[:, :, 3:], atol=1e-6)
    np.testing.assert_allclose(shifted[:, :, -3:], ra.FILL_VALUE)
    shifted = _op("translate_y", images, 2, sign=-1.0)
    np.testing.assert_allclose(shifted[:, 2:], images[:, :-2], atol=1e-6)
    sheared = _op("shear_x", images, 5)
    np.testing.assert_allclose(sheared[:, 0], images[:, 0], atol=1e-6)  # row 0 does not move
    assert not np.allclose(sheared[:, -1], images[:, -1])
    rotated = _op("rotate", images, 6)
    corner_grey = np.isclose(rotated[:, 0, 0], ra.FILL_VALUE).all()
    assert corner_grey and not np.allclose(rotated, images)
    np.testing.assert_allclose(_op("rotate", images, 0), images)


def test_cutout_greys_a_square_clipped_at_the_border():
    images = np.zeros((64, 16, 16, 3), "float32")
    out = ra.cutout(images, tf.constant([3, 4]), 8).numpy()
    grey = np.isclose(out[..., 0], ra.FILL_VALUE)
    for mask in grey:
        rows, columns = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        # A full rectangle, at most 8 x 8, touching the border when smaller.
        assert mask.sum() == len(rows) * len(columns) > 0
        assert len(rows) <= 8 and len(columns) <= 8
        assert len(rows) == 8 or rows[0] == 0 or rows[-1] == 15
    assert (grey.sum(axis=(1, 2)) < 64).any()  # some squares are clipped


def test_flip_and_shift_is_a_window_of_the_reflected_image():
    images = _images(batch=6, size=16)
    out = ra.flip_and_shift(images, tf.constant([1, 2])).numpy()
    padded = np.pad(images, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect")
    for b in range(6):
        windows = [candidate[top:top + 16, left:left + 16]
                   for candidate in (padded[b], np.pad(images[b, :, ::-1], [(2, 2), (2, 2),
                                                                           (0, 0)], "reflect"))
                   for top in range(5) for left in range(5)]
        assert any(np.array_equal(out[b], window) for window in windows)


def test_rand_augment_is_seeded_in_range_and_the_same_in_every_mode():
    images = _images(batch=8, size=16)
    first = assert_modes_agree(lambda x, s: ra.rand_augment(x, s), images,
                               np.array([5, 6], "int32"))
    again = ra.rand_augment(images, tf.constant([5, 6])).numpy()
    other = ra.rand_augment(images, tf.constant([5, 7])).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.dtype == np.float32 and first.shape == images.shape
    assert first.min() >= 0.0 and first.max() <= 1.0
    single = ra.rand_augment(images[0], tf.constant([5, 6]))
    assert single.shape == images[0].shape


def test_weak_strong_recipes():
    uint8 = (np.random.default_rng(0).integers(0, 256, size=(4, 16, 16, 3))).astype("uint8")
    recipe = fixmatch_views(16)
    weak, strong = recipe(uint8, tf.constant([0, 1]))
    assert recipe.num_views == 2 and recipe.sizes == (16, 16)
    assert weak.dtype == tf.float32 and weak.shape == (4, 16, 16, 3)
    assert not np.allclose(weak, strong)
    assert type(recipe).from_config(recipe.get_config()) == recipe
    views = mixmatch_views(16)(uint8, tf.constant([0, 1]))
    assert len(views) == 2 and not np.allclose(views[0], views[1])
    assert get_recipe("hiermatch", image_size=16, num_strong=0).num_views == 2
    with pytest.raises(ValueError, match="at least one view"):
        ra.WeakStrongRecipe(16, num_weak=0, num_strong=0)


def test_docstring_examples():
    result = doctest.testmod(ra, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

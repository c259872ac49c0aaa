"""Colour jitter, grayscale and solarize against NumPy and their invariants."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.augment import color
from keras_ssl.augment.common import LUMA_WEIGHTS
from tests.augment.modes import assert_modes_agree
from tests.augment.modes import random_images
from tests.augment.modes import seed


def _luma(images):
    return np.asarray(images) @ np.asarray(LUMA_WEIGHTS, np.float32)


def _mid_grey_images(batch_size=64, spread=0.1):
    """Images near mid-grey, so that no jitter below strength 0.8 clips."""
    rng = np.random.default_rng(3)
    return (0.5 + rng.uniform(-spread, spread, (batch_size, 8, 8, 3))).astype(np.float32)


def test_jitter_modes_agree_and_range():
    jitter = lambda x, s: color.color_jitter(
        x, s, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, probability=0.8
    )
    out = assert_modes_agree(jitter, random_images(batch_size=8), seed())
    assert out.shape == (8, 32, 32, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert color.color_jitter(random_images()[0], seed(), brightness=0.4).shape == (32, 32, 3)


def test_jitter_identity_cases():
    images = random_images()
    strengths = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    np.testing.assert_array_equal(
        color.color_jitter(images, seed(), probability=0.0, **strengths), images
    )
    np.testing.assert_array_equal(color.color_jitter(images, seed(), probability=1.0), images)


def test_jitter_seeds():
    images = random_images()
    strengths = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, probability=1.0)
    a = color.color_jitter(images, seed(1, 2), **strengths)
    b = color.color_jitter(images, seed(1, 3), **strengths)
    assert not np.allclose(a, b)


def test_brightness_scales_each_image_within_range():
    images = _mid_grey_images()
    out = color.color_jitter(images, seed(), brightness=0.4, probability=1.0).numpy()
    ratio = out / images
    # One factor per image, drawn from [0.6, 1.4], and every image changed.
    np.testing.assert_allclose(ratio, ratio[:, :1, :1, :1] * np.ones_like(ratio), rtol=1e-5)
    factors = ratio[:, 0, 0, 0]
    assert factors.min() >= 0.6 - 1e-5 and factors.max() <= 1.4 + 1e-5
    assert np.all(np.abs(factors - 1.0) > 1e-6)
    assert factors.min() < 0.8 and factors.max() > 1.2


def test_brightness_probability_applies_to_some_images():
    images = _mid_grey_images()
    out = color.color_jitter(images, seed(), brightness=0.4, probability=0.5).numpy()
    changed = np.any(out != images, axis=(1, 2, 3))
    assert 10 < changed.sum() < 54


def test_saturation_keeps_luma_and_contrast_keeps_mean_luma():
    # The luma weights sum to 0.9999, not 1, hence the 1e-4 tolerances.
    images = _mid_grey_images()
    saturated = color.color_jitter(images, seed(), saturation=0.8, probability=1.0)
    np.testing.assert_allclose(_luma(saturated), _luma(images), atol=1e-4)
    contrasted = color.color_jitter(images, seed(), contrast=0.8, probability=1.0)
    np.testing.assert_allclose(
        _luma(contrasted).mean(axis=(1, 2)), _luma(images).mean(axis=(1, 2)), atol=1e-4
    )
    assert not np.allclose(contrasted, images)


def _recovered_factor(out, images, reference):
    """The blend factor f of ``out = reference + f (images - reference)``,
    read at each image's pixel farthest from the reference."""
    flat = lambda x: np.broadcast_to(x, images.shape).reshape(len(images), -1)
    gap = flat(images) - flat(reference)
    best = np.argmax(np.abs(gap), axis=1)[:, None]
    delta = np.take_along_axis(flat(out) - flat(reference), best, axis=1)
    return (delta / np.take_along_axis(gap, best, axis=1))[:, :, None, None]


@pytest.mark.parametrize("name", ["contrast", "saturation"])
def test_blend_against_numpy_for_recovered_factor(name):
    # Recover each image's factor from one pixel, check it is in [0.5, 1.5] and
    # that the whole image is the NumPy blend with that factor.
    images = _mid_grey_images(batch_size=8)
    out = color.color_jitter(images, seed(), probability=1.0, **{name: 0.5}).numpy()
    if name == "contrast":
        reference = _luma(images).mean(axis=(1, 2))[:, None, None, None]
    else:
        reference = _luma(images)[..., None]
    factor = _recovered_factor(out, images, reference)
    assert factor.min() >= 0.5 - 1e-3 and factor.max() <= 1.5 + 1e-3
    np.testing.assert_allclose(out, reference + factor * (images - reference), atol=1e-4)


def test_hue_leaves_grey_untouched_and_matches_tf_image():
    grey = np.repeat(random_images()[..., :1], 3, axis=-1)
    out = color.color_jitter(grey, seed(), hue=0.5, probability=1.0)
    np.testing.assert_allclose(out, grey, atol=1e-6)

    images = random_images(batch_size=6, size=16)
    shifts = np.array([-0.5, -0.3, -0.05, 0.0, 0.2, 0.5], np.float32)
    hsv = tf.image.rgb_to_hsv(images).numpy()
    hsv[..., 0] = np.mod(hsv[..., 0] + shifts[:, None, None], 1.0)
    want = tf.image.hsv_to_rgb(hsv)
    np.testing.assert_allclose(color.shift_hue(images, shifts), want, atol=1e-5)
    for image, shift in zip(images, shifts):
        np.testing.assert_allclose(
            color.shift_hue(image[None], shift[None])[0],
            tf.image.adjust_hue(image, shift),
            atol=1e-5,
        )


def test_random_order_covers_both_orders_and_respects_mask():
    # x + 1 and 2 x do not commute: each image ends as 2 x + 2 or 2 x + 1.
    images = tf.zeros([64, 1, 1, 1])
    transforms = [lambda x, i: x + 1.0, lambda x, i: 2.0 * x]
    out = color.apply_in_random_order(images, seed(), transforms).numpy().ravel()
    assert set(np.unique(out)) == {1.0, 2.0}
    assert 16 < np.sum(out == 2.0) < 48

    mask = tf.range(64) < 32
    masked = color.apply_in_random_order(images, seed(), transforms, mask=mask)
    masked = masked.numpy().ravel()
    np.testing.assert_array_equal(masked[32:], 0.0)
    np.testing.assert_array_equal(masked[:32], out[:32])


@pytest.mark.parametrize("probability", [0.0, 0.5, 1.0])
def test_grayscale(probability):
    images = random_images(batch_size=16)
    gray = lambda x, s: color.random_grayscale(x, s, probability=probability)
    out = assert_modes_agree(gray, images, seed())
    luma = _luma(images)[..., None]
    for got, original, want in zip(out, images, luma):
        is_gray = np.allclose(got, np.broadcast_to(want, got.shape), atol=1e-6)
        assert is_gray or np.array_equal(got, original)
        assert is_gray == (probability == 1.0) or probability == 0.5
    if probability == 0.5:
        assert not np.array_equal(out, images)


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_solarize_against_numpy(threshold):
    images = random_images(batch_size=16)
    want = np.where(images >= threshold, 1.0 - images, images)
    out = assert_modes_agree(
        lambda x, s: color.solarize(x, s, probability=1.0, threshold=threshold), images, seed()
    )
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(color.solarize(images, seed(), probability=0.0), images)
    half = color.solarize(images, seed(), probability=0.5, threshold=threshold).numpy()
    solarized = [np.array_equal(h, w) for h, w in zip(half, want)]
    kept = [np.array_equal(h, x) for h, x in zip(half, images)]
    assert all(s or k for s, k in zip(solarized, kept))
    assert 0 < sum(solarized) < 16

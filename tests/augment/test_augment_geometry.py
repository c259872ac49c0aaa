"""Random resized crop and flip: modes, shapes, box statistics, geometry."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.augment import geometry
from tests.augment.modes import assert_modes_agree
from tests.augment.modes import random_images
from tests.augment.modes import seed


def _x_ramp(batch_size=4, size=32):
    """Images whose value is the x coordinate, scaled to [0, 1]."""
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    return np.broadcast_to(ramp[None, None, :, None], (batch_size, size, size, 3)).copy()


def test_crop_modes_agree_and_shape():
    crop = lambda x, s: geometry.random_resized_crop(x, s, size=16, flip_probability=0.5)
    out = assert_modes_agree(crop, random_images(), seed())
    assert out.shape == (4, 16, 16, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_crop_seeds():
    images = random_images()
    a = geometry.random_resized_crop(images, seed(1, 2), size=32)
    b = geometry.random_resized_crop(images, seed(1, 2), size=32)
    c = geometry.random_resized_crop(images, seed(1, 3), size=32)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_crop_single_image_and_num_crops():
    image = random_images(batch_size=1)[0]
    assert geometry.random_resized_crop(image, seed(), size=8).shape == (8, 8, 3)
    many = geometry.random_resized_crop(random_images(), seed(), size=8, num_crops=3)
    assert many.shape == (12, 8, 8, 3)
    # Crop j of image b is row j * B + b: rows of the same image differ.
    assert not np.allclose(many[0], many[4])


def test_full_box_is_identity_and_flip_mirrors():
    images = random_images()
    whole = dict(size=32, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    # Equal up to the 1e-5 edge margin of the boxes.
    out = geometry.random_resized_crop(images, seed(), **whole)
    np.testing.assert_allclose(out, images, atol=1e-3)
    flipped = geometry.random_resized_crop(images, seed(), flip_probability=1.0, **whole)
    np.testing.assert_allclose(flipped, tf.image.flip_left_right(images), atol=1e-3)


@pytest.mark.parametrize("flip_probability, sign", [(0.0, 1.0), (1.0, -1.0)])
def test_crop_keeps_x_order(flip_probability, sign):
    out = geometry.random_resized_crop(
        _x_ramp(batch_size=16), seed(), size=24, flip_probability=flip_probability
    ).numpy()
    # A crop of an x-ramp is an x-ramp: constant down columns, monotone along rows.
    np.testing.assert_allclose(out, np.broadcast_to(out[:, :1], out.shape), atol=1e-6)
    assert np.all(sign * np.diff(out[:, 0, :, 0], axis=1) >= -1e-6)


def test_box_statistics_within_bounds():
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    top, left, h, w = (
        t.numpy()
        for t in geometry.sample_crop_boxes(
            seed(), 4000, 1000, 1000, scale=scale, ratio=ratio
        )
    )
    area = h * w / 1e6
    assert area.min() >= scale[0] - 2e-3 and area.max() <= 1.0
    assert (w / h).min() >= ratio[0] - 1e-2 and (w / h).max() <= ratio[1] + 1e-2
    assert top.min() >= 0 and left.min() >= 0
    assert (top + h).max() <= 1000 and (left + w).max() <= 1000
    # Both ends of the scale range are reached, and boxes start everywhere.
    assert area.min() < 0.1 and area.max() > 0.9
    assert np.all(top == np.floor(top))


def test_fallback_is_centre_crop():
    # No 1:2 box covers the whole square, so every attempt fails.
    top, left, h, w = (
        t.numpy()
        for t in geometry.sample_crop_boxes(
            seed(), 8, 32, 32, scale=(1.0, 1.0), ratio=(2.0, 3.0)
        )
    )
    np.testing.assert_array_equal(w, 32)
    np.testing.assert_array_equal(h, 16)
    np.testing.assert_array_equal(top, 8)
    np.testing.assert_array_equal(left, 0)


def test_flip():
    images = random_images()
    flip = lambda x, s: geometry.random_flip(x, s, probability=0.5)
    out = assert_modes_agree(flip, images, seed())
    mirrored = tf.image.flip_left_right(images).numpy()
    for got, original, flipped in zip(out, images, mirrored):
        assert np.array_equal(got, original) or np.array_equal(got, flipped)
    np.testing.assert_array_equal(geometry.random_flip(images, seed(), 1.0), mirrored)
    np.testing.assert_array_equal(geometry.random_flip(images, seed(), 0.0), images)
    assert geometry.random_flip(images[0], seed(), 1.0).shape == (32, 32, 3)


@pytest.mark.parametrize("size", [7, 32, 45])
def test_crop_never_samples_outside(size):
    # Outside the image crop_and_resize writes 0; a white image must stay white.
    ones = np.ones((256, 32, 32, 3), np.float32)
    out = geometry.random_resized_crop(ones, seed(), size=size, flip_probability=0.5)
    assert out.numpy().min() > 0.999

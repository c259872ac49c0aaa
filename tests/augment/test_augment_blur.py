"""Gaussian blur against a NumPy separable convolution and its invariants."""

import numpy as np
import pytest

from keras_ssl.augment import blur
from tests.augment.modes import assert_modes_agree
from tests.augment.modes import random_images
from tests.augment.modes import seed


def _numpy_blur(images, sigma, kernel_size):
    """Reference: separable Gaussian with reflect padding (torchvision's)."""
    radius = kernel_size // 2
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    pad = [(0, 0), (radius, radius), (radius, radius), (0, 0)]
    padded = np.pad(images.astype(np.float64), pad, mode="reflect")
    height, width = images.shape[1:3]
    rows = sum(kernel[t] * padded[:, t : t + height] for t in range(kernel_size))
    return sum(kernel[t] * rows[:, :, t : t + width] for t in range(kernel_size))


@pytest.mark.parametrize("sigma, kernel_size", [(0.5, 3), (1.5, 5), (2.0, 7)])
def test_blur_against_numpy(sigma, kernel_size):
    images = random_images(batch_size=3, size=16)
    out = assert_modes_agree(
        lambda x, s: blur.gaussian_blur(
            x, s, probability=1.0, sigma=(sigma, sigma), kernel_size=kernel_size
        ),
        images,
        seed(),
    )
    np.testing.assert_allclose(out, _numpy_blur(images, sigma, kernel_size), atol=1e-5)


def test_blur_constant_image_and_mean():
    constant = np.full((4, 32, 32, 3), 0.3, np.float32)
    out = blur.gaussian_blur(constant, seed(), probability=1.0)
    np.testing.assert_allclose(out, constant, atol=1e-6)

    images = random_images(batch_size=8)
    blurred = blur.gaussian_blur(images, seed(), probability=1.0).numpy()
    np.testing.assert_allclose(blurred.mean(axis=(1, 2)), images.mean(axis=(1, 2)), atol=5e-3)
    # Blurring smooths: neighbouring pixels get closer.
    roughness = lambda x: np.abs(np.diff(x, axis=2)).mean()
    assert roughness(blurred) < roughness(images)
    assert blurred.min() >= 0.0 and blurred.max() <= 1.0


def test_blur_probability_and_seeds():
    images = random_images(batch_size=16)
    np.testing.assert_array_equal(blur.gaussian_blur(images, seed(), probability=0.0), images)
    half = assert_modes_agree(
        lambda x, s: blur.gaussian_blur(x, s, probability=0.5), images, seed()
    )
    kept = [np.array_equal(h, x) for h, x in zip(half, images)]
    assert 0 < sum(kept) < 16
    a = blur.gaussian_blur(images, seed(1, 2), probability=1.0)
    b = blur.gaussian_blur(images, seed(1, 3), probability=1.0)
    assert not np.allclose(a, b)
    assert blur.gaussian_blur(images[0], seed(), probability=1.0).shape == (32, 32, 3)


def test_default_kernel_size():
    assert [blur.default_kernel_size(s) for s in (16, 32, 96, 224)] == [3, 3, 9, 23]
    with pytest.raises(ValueError):
        blur.gaussian_blur(random_images(), seed(), probability=1.0, kernel_size=4)

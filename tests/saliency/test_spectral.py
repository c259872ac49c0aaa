"""Spectral-residual saliency: the steps in NumPy, the blob it should find, thresholds, modes."""

import doctest

import numpy as np
import pytest

from keras_ssl.saliency import spectral, threshold
from keras_ssl.saliency.spectral import SpectralResidualMasks, spectral_residual_saliency
from tests.augment.modes import assert_modes_agree, random_images
from tests.saliency.blobs import blob_images


def reference_saliency(image, sigma=2.5, average_size=3):
    """Hou & Zhang's MATLAB steps in float64 NumPy for an image no wider than 64 px."""
    grey = image @ np.array([0.2989, 0.587, 0.114])
    spectrum = np.fft.fft2(grey)
    log_amplitude = np.log(np.abs(spectrum) + 1e-8)
    padded = np.pad(log_amplitude, average_size // 2, mode="edge")  # imfilter 'replicate'
    height, width = grey.shape
    average = sum(padded[i:i + height, j:j + width]
                  for i in range(average_size) for j in range(average_size)) / average_size**2
    residual = log_amplitude - average
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    radius = int(np.ceil(2 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-offsets**2 / (2 * sigma**2))
    kernel /= kernel.sum()
    # imfilter's default: zero padding, output the size of the input.
    saliency = np.apply_along_axis(lambda row: np.convolve(row, kernel, "same"), 0, saliency)
    saliency = np.apply_along_axis(lambda row: np.convolve(row, kernel, "same"), 1, saliency)
    return (saliency - saliency.min()) / (saliency.max() - saliency.min())


@pytest.mark.parametrize("average_size, sigma", [(3, 2.5), (5, 1.5)])
def test_matches_the_numpy_reference(average_size, sigma):
    images = random_images(3, 16, seed=1)
    images[1] = blob_images(1, 16, radius=3)[0][0]
    maps = spectral_residual_saliency(images, average_size=average_size,
                                      smoothing_sigma=sigma).numpy()
    for image, saliency in zip(images, maps):
        expected = reference_saliency(image.astype(np.float64), sigma, average_size)
        np.testing.assert_allclose(saliency, expected, atol=2e-3)


def test_finds_a_bright_blob():
    images, discs = blob_images(8, 32, radius=6)
    masks = SpectralResidualMasks()(images)
    # Spectral residual lights up the disc's edge, smoothed into a region a bit
    # larger than the disc: ~0.37 IoU here, against 0.11 for a whole-image mask.
    iou = threshold.mask_iou(masks, discs).numpy()
    assert iou.mean() > 0.3, iou
    saliency = SpectralResidualMasks().saliency(images).numpy()
    inside = (saliency * discs).sum((1, 2)) / discs.sum((1, 2))
    outside = (saliency * (1 - discs)).sum((1, 2)) / (1 - discs).sum((1, 2))
    assert np.all(inside > 2 * outside)


def test_large_images_are_shrunk_to_the_working_size_and_mapped_back():
    images, discs = blob_images(2, 96, radius=18, seed=3)
    maps = spectral_residual_saliency(images, working_size=64).numpy()
    assert maps.shape == (2, 96, 96)
    assert maps.min() == 0.0 and maps.max() == pytest.approx(1.0)
    assert threshold.mask_iou(threshold.binarize(maps), discs).numpy().mean() > 0.3


def test_binarize_rules_and_flat_maps():
    maps = np.array([[[0.0, 0.2], [0.5, 1.0]], [[0.0, 0.0], [0.0, 0.0]]], np.float32)
    np.testing.assert_array_equal(threshold.binarize(maps).numpy()[0], [[0, 0], [1, 1]])
    np.testing.assert_array_equal(threshold.binarize(maps, mean_factor=2.0).numpy()[0],
                                  [[0, 0], [0, 1]])
    np.testing.assert_array_equal(threshold.binarize(maps, rule="fixed", threshold=0.1).numpy()[0],
                                  [[0, 1], [1, 1]])
    # A map with no structure makes the whole image foreground.
    np.testing.assert_array_equal(threshold.binarize(maps).numpy()[1], np.ones([2, 2]))
    with pytest.raises(ValueError, match="Unknown threshold rule"):
        threshold.binarize(maps, rule="median")
    blank = SpectralResidualMasks()(np.full([1, 8, 8, 3], 0.5, np.float32)).numpy()
    np.testing.assert_array_equal(blank, np.ones([1, 8, 8]))


def test_agrees_in_every_mode_and_config_round_trips():
    source = SpectralResidualMasks()
    masks = assert_modes_agree(source, random_images(2, 16, seed=4))
    assert masks.shape == (2, 16, 16) and set(np.unique(masks)) <= {0.0, 1.0}
    config = source.get_config()
    assert config["source"] == "spectral"
    assert SpectralResidualMasks(**{k: v for k, v in config.items() if k != "source"}) == source


@pytest.mark.parametrize("module", [spectral, threshold])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

"""Masks from an encoder's feature maps: the pre-pool map, the norm in NumPy, a known object."""

import doctest

import keras
import numpy as np
import pytest

from keras_ssl.backbones import resnet, tiny_backbone
from keras_ssl.saliency import encoder_masks, threshold
from keras_ssl.saliency.encoder_masks import EncoderMasks, spatial_feature_model
from tests.augment.modes import random_images
from tests.saliency.blobs import blob_images


def reference_bilinear_upsample(maps, size):
    """[B, h, w] -> [B, size, size], TensorFlow's half-pixel-centre bilinear resize."""
    def weights(out_size, in_size):
        source = np.clip((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0, in_size - 1)
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, in_size - 1)
        return low, high, source - low

    row_low, row_high, row_frac = weights(size, maps.shape[1])
    col_low, col_high, col_frac = weights(size, maps.shape[2])
    rows = (maps[:, row_low] * (1 - row_frac)[None, :, None]
            + maps[:, row_high] * row_frac[None, :, None])
    return rows[:, :, col_low] * (1 - col_frac) + rows[:, :, col_high] * col_frac


@pytest.mark.parametrize("make_encoder, shape", [
    (lambda: tiny_backbone(image_size=16, width=4), (8, 8, 8)),
    (lambda: resnet(18, image_size=16, width_multiplier=0.125), (2, 2, 64)),
])
def test_spatial_map_is_what_the_encoder_pools(make_encoder, shape):
    encoder = make_encoder()
    feature_model = spatial_feature_model(encoder)
    images = random_images(2, 16, seed=1)
    maps = feature_model(images, training=False).numpy()
    assert maps.shape == (2, *shape)
    np.testing.assert_allclose(maps.mean((1, 2)), encoder(images, training=False).numpy(),
                               rtol=1e-5, atol=1e-6)
    # The sub-model shares the encoder's variables.
    assert {id(w) for w in feature_model.weights} <= {id(w) for w in encoder.weights}


def test_reaches_into_a_nested_model_as_keras_application_backbones_are():
    inner_input = keras.Input((16, 16, 3))
    conv = keras.layers.Conv2D(5, 3, padding="same", name="conv")(inner_input)
    inner = keras.Model(inner_input, keras.layers.GlobalAveragePooling2D()(conv), name="inner")
    outer_input = keras.Input((16, 16, 3))
    encoder = keras.Model(outer_input, inner(keras.layers.Rescaling(255.0)(outer_input)))
    images = random_images(2, 16, seed=2)
    maps = spatial_feature_model(encoder)(images).numpy()
    assert maps.shape == (2, 16, 16, 5)
    np.testing.assert_allclose(maps.mean((1, 2)), encoder(images).numpy(), rtol=1e-5, atol=1e-4)


def test_layer_name_and_a_clear_error_without_final_pooling():
    encoder = tiny_backbone(image_size=16, width=4)
    assert spatial_feature_model(encoder, layer_name="relu0").output_shape == (None, 16, 16, 4)
    inputs = keras.Input((16, 16, 3))
    flat = keras.Model(inputs, keras.layers.Flatten(name="flat")(inputs))
    with pytest.raises(ValueError, match="does not end in a global pooling layer"):
        spatial_feature_model(flat)


def test_saliency_is_the_upsampled_activation_norm():
    encoder = tiny_backbone(image_size=16, width=4)
    source = EncoderMasks(encoder)
    images = random_images(3, 16, seed=3)
    maps = source.feature_model(images, training=False).numpy()
    norms = reference_bilinear_upsample(np.sqrt((maps.astype(np.float64) ** 2).sum(-1)), 16)
    low, high = norms.min((1, 2), keepdims=True), norms.max((1, 2), keepdims=True)
    np.testing.assert_allclose(source.saliency(images).numpy(), (norms - low) / (high - low),
                               atol=1e-5)
    masks = source(images).numpy()
    np.testing.assert_array_equal(masks, threshold.binarize(source.saliency(images)).numpy())


def test_a_feature_that_responds_to_brightness_finds_the_bright_disc():
    # A one-layer "encoder" whose only channel is the image brightness: its
    # activation norm is the brightness, so the mask is the disc.
    inputs = keras.Input((32, 32, 3))
    brightness = keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones",
                                     name="brightness")(inputs)
    encoder = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(brightness))
    images, discs = blob_images(4, 32, radius=6, noise=0.02)
    masks = EncoderMasks(encoder)(images)
    assert threshold.mask_iou(masks, discs).numpy().min() > 0.95


def test_config_follows_the_weights():
    encoder = tiny_backbone(image_size=16, width=4)
    source = EncoderMasks(encoder)
    before = source.get_config()
    assert before["source"] == "encoder" and before == source.get_config()
    kernel = encoder.get_layer("conv0").kernel
    kernel.assign(kernel + 1.0)
    assert source.get_config()["weights_sha256"] != before["weights_sha256"]


def test_docstring_examples():
    result = doctest.testmod(encoder_masks, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

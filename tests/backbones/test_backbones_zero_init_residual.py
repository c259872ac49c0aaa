"""`zero_init_residual`: every residual branch of a ResNet starts at zero."""

import keras
import numpy as np
import pytest

from keras_ssl import backbones


@pytest.mark.parametrize("name, last_bn", [("resnet18", "_bn2"), ("resnet50", "_bn3")])
def test_only_the_last_batch_norm_of_each_branch_starts_at_zero(name, last_bn):
    model = backbones.get(name, image_size=32, width_multiplier=0.25,
                          zero_init_residual=True)
    norms = [layer for layer in model.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    zeroed = {layer.name for layer in norms if not np.any(layer.gamma.numpy())}
    expected = {layer.name for layer in norms
                if layer.name.startswith("stage") and layer.name.endswith(last_bn)}
    assert zeroed == expected and len(expected) == (8 if name == "resnet18" else 16)
    plain = backbones.get(name, image_size=32, width_multiplier=0.25)
    assert all(np.all(layer.gamma.numpy() == 1.0) for layer in plain.layers
               if isinstance(layer, keras.layers.BatchNormalization))


def test_a_zeroed_block_starts_as_its_shortcut():
    # stage1_block1 has an identity shortcut: with its branch at zero the
    # block passes the (already rectified) stem output through unchanged.
    model = backbones.get("resnet18", image_size=32, width_multiplier=0.25,
                          zero_init_residual=True)
    probe = keras.Model(model.input, [model.get_layer("stem_relu").output,
                                      model.get_layer("stage1_block1_out").output])
    images = np.random.default_rng(0).uniform(size=(4, 32, 32, 3)).astype("float32")
    for training in (False, True):
        stem, block = probe(images, training=training)
        np.testing.assert_allclose(block, stem, atol=1e-6)
    plain = backbones.get("resnet18", image_size=32, width_multiplier=0.25)
    stem, block = keras.Model(plain.input, [plain.get_layer("stem_relu").output,
                                            plain.get_layer("stage1_block1_out").output])(images)
    assert not np.allclose(block, stem, atol=1e-3)


def test_zero_init_residual_is_refused_for_backbones_without_residual_branches():
    with pytest.raises(ValueError, match="ResNet option"):
        backbones.get("tiny", image_size=16, zero_init_residual=True)

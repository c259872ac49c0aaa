"""keras_ssl.backbones.fused_bn: the fused kernel computes Keras' BatchNorm."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import backbones
from keras_ssl.backbones import (FusedBatchNormalization, FusedSyncBatchNormalization,
                                 SyncBatchNormalization)


@pytest.mark.parametrize("fused_class, reference_class", [
    (FusedBatchNormalization, keras.layers.BatchNormalization),
    (FusedSyncBatchNormalization, SyncBatchNormalization)])
@pytest.mark.parametrize("scale_and_center", [True, False])
def test_training_step_matches_the_unfused_layer(fused_class, reference_class,
                                                 scale_and_center):
    x = tf.random.stateless_normal([16, 5, 5, 6], seed=(1, 2)) * 3.0 + 1.0
    kwargs = dict(momentum=0.9, epsilon=1e-5, center=scale_and_center,
                  scale=scale_and_center)
    fused, reference = fused_class(**kwargs), reference_class(**kwargs)
    fused.build(x.shape)
    reference.build(x.shape)
    reference.set_weights(fused.get_weights())
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        # A loss that weighs each output differently, so every gradient term counts.
        y_fused, y_reference = fused(x, training=True), reference(x, training=True)
        loss_fused = tf.reduce_sum(y_fused * tf.sin(y_fused))
        loss_reference = tf.reduce_sum(y_reference * tf.sin(y_reference))
    np.testing.assert_allclose(y_fused, y_reference, atol=1e-5)
    # The moving statistics keep Keras' biased variance, not the kernel's unbiased one.
    for mine, theirs in zip(fused.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tape.gradient(loss_fused, x),
                               tape.gradient(loss_reference, x), atol=1e-4)
    for mine, theirs in zip(tape.gradient(loss_fused, fused.trainable_weights),
                            tape.gradient(loss_reference, reference.trainable_weights)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(fused(x, training=False), reference(x, training=False),
                               atol=1e-5)


def test_inputs_it_cannot_fuse_take_the_parent_layer():
    layer = FusedBatchNormalization(epsilon=1e-5)
    rows = tf.random.stateless_normal([8, 3], seed=(3, 4))
    expected = keras.layers.BatchNormalization(epsilon=1e-5)(rows, training=True)
    np.testing.assert_allclose(layer(rows, training=True), expected, atol=1e-6)


def test_resnet_with_fused_batch_norm_has_the_plain_weights_and_outputs(tmp_path):
    plain = backbones.get("resnet18", width_multiplier=0.125, synchronized_bn=True)
    fused = backbones.get("resnet18", width_multiplier=0.125, synchronized_bn=True,
                          fused_batch_norm=True)
    assert [w.path for w in plain.weights] == [w.path for w in fused.weights]
    assert sum(isinstance(layer, FusedSyncBatchNormalization) for layer in fused.layers) == 20
    path = str(tmp_path / "plain.weights.h5")
    plain.save_weights(path)
    fused.load_weights(path)
    images = tf.random.stateless_uniform([8, 32, 32, 3], seed=(5, 6))
    np.testing.assert_allclose(fused(images, training=True), plain(images, training=True),
                               atol=1e-4)
    fused.save(tmp_path / "fused.keras")
    reloaded = keras.models.load_model(tmp_path / "fused.keras")
    assert any(isinstance(layer, FusedSyncBatchNormalization) for layer in reloaded.layers)


def test_fused_batch_norm_is_a_resnet_option():
    with pytest.raises(ValueError, match="ResNet option"):
        backbones.get("tiny", fused_batch_norm=True)

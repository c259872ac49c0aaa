"""`synchronized_bn`: BatchNorm over the global batch, a no-op with one replica."""

import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import backbones
from keras_ssl.backbones import sync_bn
from keras_ssl.distribute import make_strategy

# resnet18 at width 1/8 on 16-px images: every block kind, quick to run.
SMALL = dict(image_size=16, width_multiplier=0.125)


def _build(name, synchronized_bn, **kwargs):
    keras.utils.set_random_seed(0)
    return backbones.get(name, synchronized_bn=synchronized_bn, **{**SMALL, **kwargs})


def _images(count=8, side=16, seed=0):
    return np.random.default_rng(seed).uniform(size=(count, side, side, 3)).astype("float32")


def _norms(model):
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += _norms(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
    return found


# resnet18 builds every BatchNorm through the helper resnet50 uses too; the
# keras.applications model is converted by synchronize_batch_norm.
@pytest.mark.parametrize("name, kwargs", [("resnet18", {}), ("tiny", {}),
                                          ("keras:MobileNetV3Small", {"image_size": 32})])
def test_one_replica_is_exactly_the_plain_backbone(name, kwargs):
    plain, synced = _build(name, False, **kwargs), _build(name, True, **kwargs)
    norms = _norms(synced)
    assert norms and all(isinstance(layer, backbones.SyncBatchNormalization)
                         and layer.synchronized for layer in norms)
    assert not any(isinstance(layer, backbones.SyncBatchNormalization) for layer in _norms(plain))
    # Same variables under the same paths, and the same initial values.
    assert [w.path for w in synced.weights] == [w.path for w in plain.weights]
    for ours, theirs in zip(synced.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    images = _images(side=plain.input_shape[1])
    for training in (True, False):  # bit for bit: Keras' own synchronized BN is not
        np.testing.assert_array_equal(synced(images, training=training),
                                      plain(images, training=training))
    for ours, theirs in zip(synced.get_weights(), plain.get_weights()):  # moving statistics
        np.testing.assert_array_equal(ours, theirs)


def test_checkpoints_load_either_way_and_the_keras_file_keeps_the_option(tmp_path):
    images = _images()
    plain, synced = _build("resnet18", False), _build("resnet18", True)
    synced(images, training=True)  # moves the statistics away from their start
    synced.save_weights(str(tmp_path / "synced.weights.h5"))
    plain.load_weights(str(tmp_path / "synced.weights.h5"))
    np.testing.assert_array_equal(plain(images, training=False), synced(images, training=False))
    plain(_images(seed=1), training=True)
    plain.save_weights(str(tmp_path / "plain.weights.h5"))
    synced.load_weights(str(tmp_path / "plain.weights.h5"))
    np.testing.assert_array_equal(synced(images, training=False), plain(images, training=False))

    # tf.train.Checkpoint (the training checkpoints) too.
    prefix = tf.train.Checkpoint(encoder=synced).write(str(tmp_path / "synced_ckpt"))
    fresh = _build("resnet18", False)
    tf.train.Checkpoint(encoder=fresh).read(prefix).assert_consumed()
    np.testing.assert_array_equal(fresh(images, training=False), synced(images, training=False))

    synced.save(str(tmp_path / "synced.keras"))
    reloaded = keras.saving.load_model(str(tmp_path / "synced.keras"))
    assert [w.path for w in reloaded.weights] == [w.path for w in synced.weights]
    assert all(isinstance(layer, backbones.SyncBatchNormalization) for layer in _norms(reloaded))
    for training in (False, True):
        np.testing.assert_array_equal(reloaded(images, training=training),
                                      synced(images, training=training))


def _on_replicas(strategy, model, images, gradients=False):
    """Training-mode features (and gradients of sum(features * probe)), per replica.

    Replica r gets rows [r * n, (r + 1) * n) of `images`; the features come
    back concatenated in that order and the gradients summed over replicas.
    """
    probe = tf.constant(np.random.default_rng(1).normal(
        size=(len(images), model.output_shape[-1])).astype("float32"))
    rows = len(images) // strategy.num_replicas_in_sync

    def shard(context):
        start = context.replica_id_in_sync_group * rows
        return images[start:start + rows], probe[start:start + rows]

    @tf.function
    def step(batch):
        x, weights = batch
        if not gradients:
            return model(x, training=True), []
        with tf.GradientTape() as tape:
            features = model(x, training=True)
            loss = tf.reduce_sum(features * weights)
        return features, tape.gradient(loss, model.trainable_weights)

    features, grads = strategy.run(
        step, args=(strategy.experimental_distribute_values_from_function(shard),))
    features = np.concatenate(
        [np.asarray(f) for f in strategy.experimental_local_results(features)])
    return features, [np.asarray(strategy.reduce("SUM", g, axis=None)) for g in grads]


def _one_and_two_replicas(name, synchronized, gradients=False):
    """(one replica on the whole batch, two replicas on halves): features,
    gradients and moving statistics of the same initial backbone."""
    images = _images(count=8)
    whole = _build(name, synchronized)
    one = _on_replicas(tf.distribute.get_strategy(), whole, images, gradients)
    strategy = make_strategy("mirrored", cpu_replicas=2)
    with strategy.scope():
        mirrored = _build(name, synchronized)
    mirrored.set_weights(_build(name, synchronized).get_weights())
    two = _on_replicas(strategy, mirrored, images, gradients)
    moving = [[np.asarray(w) for w in model.weights if "moving" in w.path]
              for model in (whole, mirrored)]
    return (*one, moving[0]), (*two, moving[1])


# The tiny backbone: the 2-replica behaviour is the layer's, and the resnet
# test above shows that every BatchNorm of a synchronized backbone is that
# layer; a ResNet traced under MirroredStrategy costs several times more.
@pytest.mark.parametrize("synchronized", [True, False])
def test_two_replicas_normalise_with_the_statistics_of_the_global_batch(synchronized):
    (features, gradients, moving), (features_2, gradients_2, moving_2) = (
        _one_and_two_replicas("tiny", synchronized, gradients=synchronized))
    if not synchronized:  # each replica's own statistics: another function
        assert np.abs(features_2 - features).max() > 1e-3
        return
    # Each replica's 4 images are normalised with the statistics of all 8:
    # the features, the gradients (which flow back through the all-reduced
    # statistics) and the moving statistics are those of one replica holding
    # the whole batch, up to float32 rounding (the gradients differ by 4e-5
    # of their largest entry; per-replica statistics put them ~50% off).
    np.testing.assert_allclose(features_2, features, rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(gradients_2, gradients, strict=True):
        assert np.abs(ours - theirs).max() <= 4e-4 * np.abs(theirs).max()
    for ours, theirs in zip(moving_2, moving, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def test_the_layer_is_always_synchronized():
    layer = backbones.SyncBatchNormalization(momentum=0.9)
    assert isinstance(layer, keras.layers.BatchNormalization) and layer.synchronized
    assert backbones.SyncBatchNormalization.from_config(layer.get_config()).momentum == 0.9
    with pytest.raises(ValueError, match="always synchronized"):
        backbones.SyncBatchNormalization(synchronized=False)


def test_docstring_examples():
    result = doctest.testmod(sync_bn, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

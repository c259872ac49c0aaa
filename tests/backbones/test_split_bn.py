"""`split_batch_norm`: BatchNorm per sub-batch in training, the plain layer otherwise."""

import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import backbones, methods
from keras_ssl.backbones import split_bn
from keras_ssl.distribute import make_strategy
from keras_ssl.training import PretrainConfig, make_backbone

MOMENTUM, EPSILON = 0.9, 1e-5
RNG = np.random.default_rng(0)


def numpy_split_batch_norm(x, splits, gamma, beta, epsilon=EPSILON):
    """Outputs, and the mean over sub-batches of their means and biased variances.

    Sub-batch s is rows [s * n, (s + 1) * n) with n = len(x) / splits; the
    channels are the last axis.
    """
    x = np.asarray(x, np.float64)
    grouped = x.reshape(splits, -1, *x.shape[1:])
    axes = tuple(range(1, grouped.ndim - 1))
    mean = grouped.mean(axis=axes, keepdims=True)
    variance = grouped.var(axis=axes, keepdims=True)
    outputs = (grouped - mean) / np.sqrt(variance + epsilon) * gamma + beta
    channels = x.shape[-1]
    return (outputs.reshape(x.shape), mean.reshape(splits, channels).mean(0),
            variance.reshape(splits, channels).mean(0))


def _layer(kind, num_splits=None, channels=4, rank=4, seed=0):
    """A layer built for rank-`rank` inputs, with random gamma, beta and moving statistics."""
    rng = np.random.default_rng(seed)
    kwargs = dict(momentum=MOMENTUM, epsilon=EPSILON)
    layer = (backbones.SplitBatchNormalization(num_splits=num_splits, **kwargs)
             if kind == "split" else keras.layers.BatchNormalization(**kwargs))
    layer.build((None,) * (rank - 1) + (channels,))
    layer.set_weights([rng.normal(size=channels).astype("float32") for _ in range(2)]
                      + [rng.normal(size=channels).astype("float32"),
                         rng.uniform(0.5, 2.0, size=channels).astype("float32")])
    return layer


def _inputs(shape, seed=1):
    rng = np.random.default_rng(seed)
    # A different offset per row, so sub-batch statistics differ from the batch's.
    return (rng.normal(size=shape) + rng.normal(size=(shape[0],) + (1,) * (len(shape) - 1))
            * 3.0).astype("float32")


@pytest.mark.parametrize("shape, splits", [((8, 3, 3, 4), 2), ((8, 3, 3, 4), 4),
                                           ((8, 3, 3, 4), 8), ((12, 4), 3)])
def test_training_normalises_each_sub_batch_and_moves_to_their_mean_statistics(shape, splits):
    layer = _layer("split", splits, channels=shape[-1], rank=len(shape))
    gamma, beta, moving_mean, moving_variance = layer.get_weights()
    x = _inputs(shape)
    outputs = layer(x, training=True)
    expected, split_mean, split_variance = numpy_split_batch_norm(x, splits, gamma, beta)
    np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.moving_mean.numpy(),
                               MOMENTUM * moving_mean + (1 - MOMENTUM) * split_mean,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(),
                               MOMENTUM * moving_variance + (1 - MOMENTUM) * split_variance,
                               rtol=1e-5, atol=1e-6)
    # Not the whole batch's normalisation: sub-batches have their own statistics.
    whole, _, _ = numpy_split_batch_norm(x, 1, gamma, beta)
    assert np.abs(expected - whole).max() > 0.1


def test_gradients_are_those_of_independent_sub_batches():
    # Each sub-batch through a plain BatchNorm of the same weights: the
    # gradients to inputs, gamma and beta must be the split layer's.
    x = tf.constant(_inputs((8, 2, 2, 4)))
    probe = tf.constant(RNG.normal(size=(8, 2, 2, 4)).astype("float32"))
    split, plain = _layer("split", 4), _layer("plain")

    def gradients(layer, run):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(run(x) * probe)
        return tape.gradient(loss, [x, *layer.trainable_weights])

    results = (gradients(split, lambda v: split(v, training=True)),
               gradients(plain, lambda v: tf.concat(
                   [plain(part, training=True) for part in tf.split(v, 4)], axis=0)))
    for ours, theirs in zip(*results, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_inference_is_the_plain_layer():
    split, plain = _layer("split", 4), _layer("plain")
    x = _inputs((8, 3, 3, 4))
    split(x, training=True)  # moves the statistics
    plain.set_weights(split.get_weights())
    np.testing.assert_array_equal(split(x, training=False), plain(x, training=False))
    np.testing.assert_array_equal(split(x[:3]), plain(x[:3]))  # any batch size


def test_one_split_is_the_plain_layer():
    split, plain = _layer("split", 1), _layer("plain")
    x = _inputs((8, 3, 3, 4))
    for training in (True, False):
        np.testing.assert_allclose(split(x, training=training), plain(x, training=training),
                                   rtol=1e-6, atol=1e-6)
    for ours, theirs in zip(split.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


def _on_replicas(strategy, model, images):
    """Training-mode features and gradients of sum(features * probe), per replica."""
    probe = tf.constant(np.random.default_rng(1).normal(
        size=(len(images), model.output_shape[-1])).astype("float32"))
    rows = len(images) // strategy.num_replicas_in_sync

    def shard(context):
        start = context.replica_id_in_sync_group * rows
        return images[start:start + rows], probe[start:start + rows]

    @tf.function
    def step(batch):
        x, weights = batch
        with tf.GradientTape() as tape:
            features = model(x, training=True)
            loss = tf.reduce_sum(features * weights)
        return features, tape.gradient(loss, model.trainable_weights)

    features, grads = strategy.run(
        step, args=(strategy.experimental_distribute_values_from_function(shard),))
    features = np.concatenate(
        [np.asarray(f) for f in strategy.experimental_local_results(features)])
    return features, [np.asarray(strategy.reduce("SUM", g, axis=None)) for g in grads]


def _tiny(splits):
    keras.utils.set_random_seed(0)
    return backbones.get("tiny", image_size=16, width_multiplier=0.5, split_batch_norm=splits)


@pytest.mark.parametrize("splits", [2, 4])
def test_one_and_two_replicas_agree(splits):
    # 8 images in `splits` sub-batches: on 2 replicas each holds splits / 2
    # of them, so features, gradients and moving statistics are those of one
    # replica with the whole batch.
    images = np.random.default_rng(2).uniform(size=(8, 16, 16, 3)).astype("float32")
    whole = _tiny(splits)
    features, gradients = _on_replicas(tf.distribute.get_strategy(), whole, images)
    strategy = make_strategy("mirrored", cpu_replicas=2)
    with strategy.scope():
        mirrored = _tiny(splits)
    mirrored.set_weights(_tiny(splits).get_weights())
    features_2, gradients_2 = _on_replicas(strategy, mirrored, images)
    np.testing.assert_allclose(features_2, features, rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(gradients_2, gradients, strict=True):
        assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()
    for ours, theirs in zip(mirrored.weights, whole.weights, strict=True):
        if "moving" in ours.path:
            # Every replica holds the mean over all sub-batches, not its own.
            for replica_value in ours.value.values:
                np.testing.assert_allclose(replica_value, theirs.numpy(), rtol=1e-5, atol=1e-6)
    # Sub-batch statistics indeed: the whole batch's give other features.
    whole_batch, _ = _on_replicas(tf.distribute.get_strategy(), _tiny(1), images)
    assert np.abs(features - whole_batch).max() > 1e-3


def test_bad_splits_and_batches_are_refused_clearly():
    strategy = make_strategy("mirrored", cpu_replicas=2)
    with strategy.scope():
        layer = _layer("split", 3, rank=2)
    with pytest.raises(ValueError, match="split_batch_norm=3 sub-batches cannot be shared by 2"):
        strategy.run(tf.function(lambda x: layer(x, training=True)),
                     args=(tf.ones([4, 4]),))
    with pytest.raises(ValueError, match="batch of 6 rows .* 4 equal sub-batches"):
        _layer("split", 4, rank=2)(tf.ones([6, 4]), training=True)

    @tf.function(input_signature=[tf.TensorSpec([None, 4])])
    def unknown_batch(x):
        return _layer_4(x, training=True)

    _layer_4 = _layer("split", 4, rank=2)
    unknown_batch(tf.ones([8, 4]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="not divisible by 4"):
        unknown_batch(tf.ones([6, 4]))
    with pytest.raises(ValueError, match="int >= 1"):
        backbones.SplitBatchNormalization(num_splits=0)
    with pytest.raises(ValueError, match="pick one"):
        backbones.SplitBatchNormalization(num_splits=2, synchronized=True)
    with pytest.raises(ValueError, match="exclude each other"):
        backbones.get("resnet18", synchronized_bn=True, split_batch_norm=8)
    with pytest.raises(ValueError, match="exclude each other"):
        backbones.get("tiny", synchronized_bn=True, split_batch_norm=8)
    with pytest.raises(ValueError, match="int >= 0"):
        backbones.get("tiny", split_batch_norm=-2)


def _norms(model):
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += _norms(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
    return found


@pytest.mark.parametrize("name, image_size", [("resnet18", 16), ("tiny", 16),
                                              ("keras:MobileNetV3Small", 32)])
def test_every_batch_norm_of_a_backbone_is_split_under_the_plain_names(name, image_size):
    keras.utils.set_random_seed(0)
    plain = backbones.get(name, image_size=image_size, width_multiplier=0.125)
    keras.utils.set_random_seed(0)
    split = backbones.get(name, image_size=image_size, width_multiplier=0.125,
                          split_batch_norm=4)
    norms = _norms(split)
    assert norms and all(isinstance(layer, backbones.SplitBatchNormalization)
                         and layer.num_splits == 4 for layer in norms)
    assert [w.path for w in split.weights] == [w.path for w in plain.weights]
    images = np.random.default_rng(0).uniform(size=(8, image_size, image_size, 3))
    plain.set_weights(split.get_weights())
    np.testing.assert_allclose(split(images, training=False), plain(images, training=False),
                               rtol=1e-6, atol=1e-6)
    assert np.abs(split(images, training=True) - plain(images, training=True)).max() > 1e-3


def test_weights_load_into_the_plain_backbone_and_the_keras_file_keeps_the_option(tmp_path):
    images = np.random.default_rng(0).uniform(size=(8, 16, 16, 3)).astype("float32")
    keras.utils.set_random_seed(0)
    split = backbones.get("resnet18", image_size=16, width_multiplier=0.125,
                          split_batch_norm=4)
    plain = backbones.get("resnet18", image_size=16, width_multiplier=0.125)
    split(images, training=True)  # moves the statistics away from their start
    split.save_weights(str(tmp_path / "split.weights.h5"))
    plain.load_weights(str(tmp_path / "split.weights.h5"))
    np.testing.assert_array_equal(plain(images, training=False), split(images, training=False))
    # tf.train.Checkpoint, as the training checkpoints and `restore_encoder`.
    prefix = tf.train.Checkpoint(encoder=split).write(str(tmp_path / "split_ckpt"))
    fresh = backbones.get("resnet18", image_size=16, width_multiplier=0.125)
    tf.train.Checkpoint(encoder=fresh).read(prefix).assert_consumed()
    np.testing.assert_array_equal(fresh(images, training=False), split(images, training=False))

    split.save(str(tmp_path / "split.keras"))
    reloaded = keras.saving.load_model(str(tmp_path / "split.keras"))
    assert all(isinstance(layer, backbones.SplitBatchNormalization) and layer.num_splits == 4
               for layer in _norms(reloaded))
    np.testing.assert_array_equal(reloaded(images, training=True), split(images, training=True))


def test_training_plumbing_and_momentum_targets_keep_the_splits():
    assert PretrainConfig(method="ascl", data="npz:x.npz").split_batch_norm == 0
    encoder = make_backbone("moco_v2", "tiny", image_size=16, width_multiplier=0.5,
                            split_batch_norm=2)
    model = methods.get("moco_v2", encoder=encoder, projection_dim=8, queue_size=16)
    # The key encoder is a clone of the encoder: split the same way.
    for network in (model.encoder, model.key_encoder):
        assert [layer.num_splits for layer in _norms(network)] == [2, 2]
        assert backbones.has_split_batch_norm(network)
    assert not backbones.has_split_batch_norm(backbones.get("tiny", image_size=16))


def test_moco_shuffles_keys_across_sub_batches_on_one_replica_too():
    # The official single-GPU code shuffles the key batch before its split
    # BatchNorm (`_batch_shuffle_single_gpu`), so a key and its query sit in
    # different sub-batches; MoCo does so with shuffle_bn and a split key
    # encoder, with the permutation of the global batch, so 1 and 2
    # replicas still agree.
    from tests.methods import harness

    def train(strategy, shuffle_bn):
        with strategy.scope():
            model = methods.get("moco_v2", encoder=_tiny(4), run=harness.RUN, projection_dim=8,
                                queue_size=12, momentum=0.9, shuffle_bn=shuffle_bn)
            model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
        model.fit(harness.batches(2), epochs=1, verbose=0, shuffle=False)
        return harness.weights_by_path(model)

    one = train(tf.distribute.get_strategy(), True)
    two = train(make_strategy("mirrored", cpu_replicas=2), True)
    for path in one:
        np.testing.assert_allclose(two[path], one[path], rtol=1e-4, atol=5e-5, err_msg=path)
    unshuffled = train(tf.distribute.get_strategy(), False)
    assert max(np.abs(one[path] - unshuffled[path]).max() for path in one) > 1e-3


def test_docstring_examples():
    result = doctest.testmod(split_bn, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

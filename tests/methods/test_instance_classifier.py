"""The instance classifier: raw-feature initialisation, its loss against NumPy, its sharded
rows on 1 and 2 replicas, and its checkpoint."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.training import EpochFeaturePass
from tests.methods import harness

NAME = "instance_classifier"


def images(count=harness.NUM_EXAMPLES, seed=1):
    return np.random.default_rng(seed).uniform(size=(count, 16, 16, 3)).astype("float32")


def built(strategy=None, learning_rate=0.1):
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = harness.build(NAME)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9))
        model.optimizer.build(model.trainable_variables)
    return model


def feature_pass(model, pixels):
    callback = EpochFeaturePass(tf.data.Dataset.from_tensor_slices(
        {"image": pixels, "index": np.arange(len(pixels), dtype="int64")}).batch(8))
    callback.set_model(model)
    return callback


def test_raw_feature_initialisation_puts_each_images_own_row_first():
    model = built()
    pixels = images()
    assert model.wants_epoch_features(0)
    feature_pass(model, pixels).on_epoch_begin(0)
    assert not model.wants_epoch_features(0)  # once per run, and so once after a resume
    rows = model.classifier.read_all().numpy()
    # Scored with the same untrained network on its own (un-augmented) image,
    # every image's nearest row is its own.
    projections = np.concatenate([model.epoch_features(pixels[i:i + 8]).numpy()
                                  for i in range(0, len(pixels), 8)])
    scores = projections @ (rows / np.linalg.norm(rows, axis=1, keepdims=True)).T
    np.testing.assert_array_equal(scores.argmax(1), np.arange(len(pixels)))


def reference_loss(projections, rows, classes, temperature, alpha, k):
    """The smoothed cosine-softmax cross-entropy, written out in NumPy."""
    z = projections / np.linalg.norm(projections, axis=1, keepdims=True)
    w = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    logits = z @ w.T / temperature
    log_p = logits - logits.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    losses = []
    for row, own in enumerate(classes):
        others = np.argsort(-np.where(np.arange(len(w)) == own, -np.inf, logits[row]),
                            kind="stable")[:k]
        target = np.zeros(len(w))
        target[own] = 1.0 - alpha
        target[others] = alpha / k
        losses.append(-(target * log_p[row]).sum())
    return np.mean(losses)


def test_loss_matches_the_smoothed_softmax_over_every_instance():
    model = built()
    batch = next(iter(harness.batches(1)))
    ctx = model.step_context(training=False)
    from keras_ssl.methods import Batch

    outputs = model.forward(Batch.from_element(batch), ctx)
    loss, logs = model.loss(outputs, ctx)
    expected = reference_loss(outputs.queries[0].numpy(), model.classifier.read_all().numpy(),
                              batch["index"].numpy(), model.temperature, model.smoothing,
                              model.hard_classes)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    assert 0.0 <= float(logs["own_class_top1"]) <= 1.0


def fitted(strategy):
    model = built(strategy)
    model.fit(harness.batches(2), epochs=1, verbose=0, shuffle=False,
              callbacks=[feature_pass(model, images())])
    return model


def test_one_and_two_replicas_train_the_same_rows():
    single = fitted(tf.distribute.get_strategy())
    mirrored = fitted(harness.mirrored_strategy())
    assert mirrored.classifier.num_shards == 2
    np.testing.assert_allclose(mirrored.classifier.read_all().numpy(),
                               single.classifier.read_all().numpy(), rtol=1e-4, atol=1e-5)
    assert float(single.rows_initialized.numpy()) == 1.0


def test_the_rows_and_their_flag_are_checkpointed(tmp_path):
    model = fitted(tf.distribute.get_strategy())
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    restored = built()
    tf.train.Checkpoint(model=restored).restore(path).assert_existing_objects_matched()
    np.testing.assert_array_equal(restored.classifier.read_all().numpy(),
                                  model.classifier.read_all().numpy())
    assert not restored.wants_epoch_features(0)


def test_it_needs_the_training_set_size():
    from keras_ssl.backbones import tiny_backbone
    from keras_ssl.methods import InstanceClassifier

    with pytest.raises(ValueError, match="num_examples"):
        InstanceClassifier(tiny_backbone())


def test_loss_scaling_keeps_the_shard_update_and_skips_overflowing_steps():
    # Mixed float16 wraps the optimizer in a LossScaleOptimizer: the tape's
    # gradients are of the scaled loss. The shard must be stepped with the
    # unscaled gradient (the same update as without scaling) and left alone
    # on a step whose gradients overflow, as the optimizer leaves its own.
    batch = next(iter(harness.batches(1)))
    plain = built()
    with tf.distribute.get_strategy().scope():
        scaled = harness.build(NAME)
        scaled.compile(optimizer=keras.optimizers.LossScaleOptimizer(
            keras.optimizers.SGD(0.1, momentum=0.9), initial_scale=2.0 ** 12))
        scaled.optimizer.build(scaled.trainable_variables)
    start = plain.classifier.read_all().numpy()
    np.testing.assert_array_equal(scaled.classifier.read_all().numpy(), start)
    plain.train_step(batch)
    scaled.train_step(batch)
    moved = scaled.classifier.read_all().numpy()
    assert np.abs(moved - start).max() > 1e-4
    np.testing.assert_allclose(moved, plain.classifier.read_all().numpy(), rtol=1e-5, atol=1e-7)

    scaled.optimizer.dynamic_scale.assign(np.finfo(np.float32).max)  # the gradients overflow
    scaled.train_step(batch)
    np.testing.assert_array_equal(scaled.classifier.read_all().numpy(), moved)
    assert float(scaled.optimizer.dynamic_scale.numpy()) < np.finfo(np.float32).max

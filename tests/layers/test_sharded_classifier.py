"""ShardedClassifier: per-device shards, exact gradients, writes, checkpoints, 1 vs 2 replicas.

The 2-replica strategy is MirroredStrategy over the session's 2 logical CPUs
(tests/conftest.py); 1 replica is no strategy at all.
"""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.distribute.sharded_softmax import (hardest_class_targets,
                                                  sharded_softmax_cross_entropy,
                                                  sharded_top_k)
from keras_ssl.layers.sharded_classifier import ShardedClassifier
from tests.distribute.test_sharded_softmax import (_local_results, _replica,
                                                  unsharded_classifier_reference)

K, ALPHA, TAU = 3, 0.2, 0.15


@pytest.fixture(scope="module")
def mirrored():
    return distribute.make_strategy("mirrored", cpu_replicas=2)


def classifier_problem(num_classes=7, dim=4, batch=8, seed=0):
    """(W [N, d], global features [B, d], own classes [B], K, alpha, tau)."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(num_classes, dim)).astype("float32")
    features = rng.normal(size=(batch, dim)).astype("float32")
    own = rng.permutation(num_classes)[:batch % num_classes or batch].astype("int64")
    own = np.resize(own, batch)
    return weights, features, own, K, ALPHA, TAU


def build(strategy, weights, momentum=0.9, **kwargs):
    with strategy.scope():
        classifier = ShardedClassifier(weights.shape[0], weights.shape[1], momentum=momentum,
                                       temperature=TAU, **kwargs)
        classifier.assign_rows(np.arange(weights.shape[0]), weights)
    return classifier


def loss_step(classifier, strategy, features, own, k=K, alpha=ALPHA, learning_rate=None):
    """A tf.function of one replica step: loss, d/d shard, d/d local features, targets.

    With `learning_rate`, the shard is also updated with `apply_gradient`.
    """
    local_batch = features.shape[0] // strategy.num_replicas_in_sync

    @tf.function
    def step():
        def fn():
            start = _replica() * local_batch
            local = tf.constant(features[start:start + local_batch])
            with tf.GradientTape() as tape:
                tape.watch(local)
                logits = classifier(distribute.all_gather(local))
                offset = classifier.shard_offset
                own_global = distribute.all_gather(tf.constant(own[start:start + local_batch]))
                classes, weights = hardest_class_targets(logits, own_global, k, alpha,
                                                         shard_offset=offset)
                loss = tf.reduce_mean(sharded_softmax_cross_entropy(
                    logits, classes, weights, shard_offset=offset))
            grad_w, grad_f = tape.gradient(loss, [classifier.local_shard(), local])
            if learning_rate is not None:
                classifier.apply_gradient(grad_w, learning_rate)
            return loss, grad_w, grad_f, classes
        return strategy.run(fn)

    return step


def run_sharded_classifier(strategy, weights, features, own, k, alpha, temperature):
    """The classifier's loss and gradients on `strategy`, assembled over replicas."""
    assert temperature == TAU
    classifier = build(strategy, weights)
    loss, grad_w, grad_f, classes = loss_step(classifier, strategy, features, own, k, alpha)()
    losses = _local_results(strategy, loss)
    for other in losses[1:]:
        np.testing.assert_allclose(other, losses[0], rtol=1e-6)
    grad_w = np.concatenate(_local_results(strategy, grad_w))[:weights.shape[0]]
    classes = _local_results(strategy, classes)
    for other in classes[1:]:
        np.testing.assert_array_equal(other, classes[0])
    devices = [v.device for v in classifier.shard_variables]
    return (float(losses[0]), grad_w, np.concatenate(_local_results(strategy, grad_f)), classes[0],
            devices)


def test_each_device_holds_only_its_shard(mirrored):
    weights = classifier_problem(num_classes=7)[0]
    classifier = build(mirrored, weights)
    assert classifier.num_shards == 2 and classifier.shard_size == 4  # ceil(7 / 2)
    for variables in (classifier.shard_variables, classifier.velocity_variables):
        specs = [tf.DeviceSpec.from_string(v.device) for v in variables]
        assert [(s.device_type, s.device_index) for s in specs] == [("CPU", 0), ("CPU", 1)]
        assert [tuple(v.shape) for v in variables] == [(4, 4), (4, 4)]
    assert not isinstance(classifier.shard_variables[0], tf.distribute.DistributedValues)
    # Weights and velocities: 2 x 4 rows x 4 floats per device.
    assert sorted(classifier.state_bytes_per_device().values()) == [128, 128]
    # Not Keras weights: a Keras optimizer must never see them.
    assert classifier.weights == [] and classifier.trainable_weights == []
    # The padding row is zero; read_all drops it.
    np.testing.assert_array_equal(classifier.shard_variables[1].numpy()[3], 0.0)
    np.testing.assert_array_equal(classifier.read_all().numpy(), weights)


@pytest.mark.parametrize("replicas", [1, 2])
def test_loss_and_gradients_equal_unsharded(mirrored, replicas):
    strategy = mirrored if replicas == 2 else tf.distribute.get_strategy()
    problem = classifier_problem(num_classes=7)
    loss, grad_w, grad_f, classes, _ = run_sharded_classifier(strategy, *problem)
    want_loss, want_w, want_f, want_classes = unsharded_classifier_reference(*problem)
    np.testing.assert_array_equal(classes, want_classes)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    np.testing.assert_allclose(grad_w, want_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grad_f, want_f, rtol=1e-4, atol=1e-6)


def test_padding_rows_never_win(mirrored):
    # 5 classes on 2 replicas: shard 1 holds classes 3, 4 and a zero padding row.
    # Every real row points away from every feature (cosine < 0), so an unmasked
    # padding row (cosine 0) would be the top-1 and enter the softmax.
    rng = np.random.default_rng(4)
    direction = rng.normal(size=4).astype("float32")
    weights = (-direction + 0.1 * rng.normal(size=(5, 4))).astype("float32")
    features = (direction + 0.1 * rng.normal(size=(4, 4))).astype("float32")
    own = np.array([0, 1, 2, 3], np.int64)
    classifier = build(mirrored, weights)

    @tf.function
    def step():
        def fn():
            logits = classifier(tf.constant(features))
            return logits, sharded_top_k(logits, 4, shard_offset=classifier.shard_offset,
                                         exclude=own)[1]
        return mirrored.run(fn)

    logits, top = step()
    assert np.all(np.isneginf(_local_results(mirrored, logits)[1][:, 2]))
    for classes in _local_results(mirrored, top):
        assert classes.max() < 5
    problem = (weights, features, own, 3, ALPHA, TAU)
    loss, grad_w, _, _, _ = run_sharded_classifier(mirrored, *problem)
    want_loss, want_w, _, _ = unsharded_classifier_reference(*problem)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    np.testing.assert_allclose(grad_w, want_w, rtol=1e-4, atol=1e-6)


def test_assign_rows_writes_the_global_rows(mirrored):
    weights = classifier_problem(num_classes=7)[0]
    classifier = build(mirrored, weights)
    expected = weights.copy()
    # Cross-replica context: global indices, each shard takes its own.
    rows = np.full((2, 4), 7.0, np.float32)
    classifier.assign_rows([1, 5], rows)
    expected[[1, 5]] = rows
    np.testing.assert_array_equal(classifier.read_all().numpy(), expected)

    # Replica context: each replica passes its rows; they are gathered, and
    # each shard keeps the ones it owns (replica 0 writes a row of shard 1).
    local_indices = {0: [6, 0], 1: [2, 4]}
    local_values = {r: np.full((2, 4), 10.0 + r, np.float32) for r in (0, 1)}

    @tf.function
    def write():
        def fn():
            replica = _replica()
            classifier.assign_rows(tf.constant(local_indices[replica], tf.int64),
                                   tf.constant(local_values[replica]))
        mirrored.run(fn)

    write()
    for replica in (0, 1):
        expected[local_indices[replica]] = local_values[replica]
    np.testing.assert_array_equal(classifier.read_all().numpy(), expected)


def test_checkpoint_round_trip(mirrored, tmp_path):
    weights, features, own, *_ = classifier_problem(num_classes=7)
    classifier = build(mirrored, weights)
    loss_step(classifier, mirrored, features, own, learning_rate=0.5)()  # velocities move
    saved_w = classifier.read_all().numpy()
    saved_v = np.concatenate([v.numpy() for v in classifier.velocity_variables])[:7]
    assert np.abs(saved_v).max() > 0
    path = tf.train.Checkpoint(classifier=classifier).save(str(tmp_path / "ckpt"))

    for strategy in (mirrored, tf.distribute.get_strategy()):  # same and another count
        other = build(strategy, np.zeros_like(weights))
        tf.train.Checkpoint(classifier=other).restore(path).assert_existing_objects_matched()
        np.testing.assert_array_equal(other.read_all().numpy(), saved_w)
        velocity = np.concatenate([v.numpy() for v in other.velocity_variables])[:7]
        np.testing.assert_array_equal(velocity, saved_v)
        if strategy is mirrored:
            np.testing.assert_array_equal(other.shard_variables[1].numpy()[3], 0.0)

    with pytest.raises(ValueError, match=r"\(7, 4\).*\(8, 4\)"):
        tf.train.Checkpoint(classifier=build(mirrored, np.zeros((8, 4), np.float32))).restore(path)


@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_update_on_2_replicas_equals_1_replica(mirrored, momentum):
    weights, features, own, *_ = classifier_problem(num_classes=7, seed=5)
    # The initial rows do not depend on the replica count either.
    with mirrored.scope():
        two = ShardedClassifier(7, 4, seed=3)
    one = ShardedClassifier(7, 4, seed=3)
    np.testing.assert_array_equal(two.read_all().numpy(), one.read_all().numpy())

    results = []
    for strategy in (tf.distribute.get_strategy(), mirrored):
        classifier = build(strategy, weights, momentum=momentum, weight_decay=1e-2)
        step = loss_step(classifier, strategy, features, own, learning_rate=0.5)
        for _ in range(2):  # the second step uses the momentum of the first
            step()
        if momentum:
            velocity = np.concatenate([v.numpy() for v in classifier.velocity_variables])[:7]
        else:  # plain SGD keeps no velocity
            assert classifier.velocity_variables == ()
            velocity = np.zeros(0)
        results.append((classifier.read_all().numpy(), velocity))
    assert np.abs(results[0][0] - weights).max() > 1e-3  # the step moved W
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-5, atol=1e-6)

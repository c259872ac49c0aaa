"""The softmax cross-entropy and top-K over classes split across replicas equal the unsharded ones.

References are plain computations on the whole matrix: NumPy for the loss,
its logit gradient (softmax - y) / B, the top-K and the smoothing targets;
TensorFlow autodiff without a strategy for the classifier's W and feature
gradients. The sharded side runs on 1 replica (no strategy), on 2 (the
session's MirroredStrategy over 2 logical CPUs) and on 4 (one subprocess that
splits its CPU in 4 before TensorFlow starts).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.distribute.sharded_softmax import (hardest_class_targets,
                                                  sharded_softmax_cross_entropy,
                                                  sharded_top_k)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def mirrored():
    return distribute.make_strategy("mirrored", cpu_replicas=2)


def _replica():
    return int(tf.get_static_value(tf.distribute.get_replica_context().replica_id_in_sync_group))


def _local_results(strategy, value):
    return [np.asarray(v) for v in strategy.experimental_local_results(value)]


# ---- NumPy references ----------------------------------------------------------------
def dense_targets(classes, weights, num_classes):
    y = np.zeros((classes.shape[0], num_classes), np.float64)
    np.put_along_axis(y, classes, weights, axis=1)
    return y


def numpy_loss_and_grad(logits, classes, weights):
    """Unsharded per-row loss and d mean(loss) / d logits = (softmax - y) / B."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    y = dense_targets(classes, weights, logits.shape[1])
    loss = -(y * log_softmax).sum(axis=1)
    grad = (np.exp(log_softmax) * y.sum(axis=1, keepdims=True) - y) / logits.shape[0]
    return loss, grad


def numpy_top_k(logits, k, exclude=None):
    logits = logits.astype(np.float64).copy()
    if exclude is not None:
        logits[np.arange(len(logits)), exclude] = -np.inf
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(logits, order, axis=1), order


def numpy_smoothing_targets(weights_matrix, features, own, k, alpha):
    """1 - alpha on the own class, alpha / K on the K largest cosines among the others."""
    rows = weights_matrix / np.linalg.norm(weights_matrix, axis=1, keepdims=True)
    feats = features / np.linalg.norm(features, axis=1, keepdims=True)
    _, hardest = numpy_top_k(feats @ rows.T, k, exclude=own)
    classes = np.concatenate([own[:, None], hardest], axis=1)
    weights = np.concatenate([np.full((len(own), 1), 1 - alpha),
                              np.full((len(own), k), alpha / k)], axis=1)
    return classes, weights


def unsharded_classifier_reference(weights_matrix, features, own, k, alpha, temperature):
    """Loss, dL/dW, dL/dfeatures, target classes of the whole classifier, no strategy."""
    classes, target_weights = numpy_smoothing_targets(weights_matrix, features, own, k, alpha)
    y = tf.constant(dense_targets(classes, target_weights, len(weights_matrix)), tf.float32)
    w = tf.constant(weights_matrix, tf.float32)
    f = tf.constant(features, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch([w, f])
        logits = tf.matmul(tf.math.l2_normalize(f, axis=1),
                           tf.math.l2_normalize(w, axis=1), transpose_b=True) / temperature
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, logits))
    grad_w, grad_f = tape.gradient(loss, [w, f])
    return float(loss), grad_w.numpy(), grad_f.numpy(), classes


# ---- the sharded side ----------------------------------------------------------------
def sharded_loss_and_grad(strategy, logits, classes, weights):
    """Loss and logit gradient with the columns split over `strategy`'s replicas."""
    replicas = strategy.num_replicas_in_sync
    width = -(-logits.shape[1] // replicas)
    padded = np.pad(logits, [[0, 0], [0, width * replicas - logits.shape[1]]])

    @tf.function
    def step():
        def fn():
            offset = _replica() * width
            local = tf.constant(padded[:, offset:offset + width])
            with tf.GradientTape() as tape:
                tape.watch(local)
                loss = sharded_softmax_cross_entropy(
                    local, classes, weights, shard_offset=offset,
                    num_classes=logits.shape[1])
                mean = tf.reduce_mean(loss)
            return loss, tape.gradient(mean, local)
        return strategy.run(fn)

    losses, grads = step()
    losses = _local_results(strategy, losses)
    grad = np.concatenate(_local_results(strategy, grads), axis=1)[:, :logits.shape[1]]
    return losses, grad


def sharded_top_k_of(strategy, logits, k, exclude):
    replicas = strategy.num_replicas_in_sync
    width = -(-logits.shape[1] // replicas)
    padded = np.pad(logits, [[0, 0], [0, width * replicas - logits.shape[1]]],
                    constant_values=100.0)  # padding would win if it were not masked

    @tf.function
    def step():
        def fn():
            offset = _replica() * width
            return sharded_top_k(tf.constant(padded[:, offset:offset + width]), k,
                                 shard_offset=offset, exclude=exclude,
                                 num_classes=logits.shape[1])
        return strategy.run(fn)

    values, classes = step()
    return _local_results(strategy, values), _local_results(strategy, classes)


def strategies(mirrored):
    return [tf.distribute.get_strategy(), mirrored]


def _problem(seed, batch=6, num_classes=7, num_targets=3):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch, num_classes)).astype("float32") * 3
    classes = np.stack([rng.permutation(num_classes)[:num_targets] for _ in range(batch)])
    weights = rng.dirichlet(np.ones(num_targets), size=batch).astype("float32")
    return logits, classes.astype("int64"), weights


# ---- tests ---------------------------------------------------------------------------
def test_loss_and_logit_gradient_equal_unsharded_on_1_and_2_replicas(mirrored):
    # 7 classes on 2 replicas: shards of 4, the last with one padding column.
    logits, classes, weights = _problem(0)
    expected_loss, expected_grad = numpy_loss_and_grad(logits, classes, weights)
    for strategy in strategies(mirrored):
        losses, grad = sharded_loss_and_grad(strategy, logits, classes, weights)
        for loss in losses:  # the same on every replica
            np.testing.assert_allclose(loss, expected_loss, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-7)


def test_loss_is_stable_for_large_logits(mirrored):
    logits, classes, weights = _problem(1)
    logits = logits * 300.0  # exp overflows float32 without the global max
    expected_loss, _ = numpy_loss_and_grad(logits, classes, weights)
    losses, grad = sharded_loss_and_grad(mirrored, logits, classes, weights)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(losses[1], expected_loss, rtol=1e-5)


def test_cross_shard_top_k_equals_unsharded_top_k(mirrored):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(5, 11)).astype("float32")
    exclude = np.array([0, 10, 5, 6, 3], np.int64)
    want_values, want_classes = numpy_top_k(logits, 4, exclude)
    for strategy in strategies(mirrored):
        values, classes = sharded_top_k_of(strategy, logits, 4, exclude)
        for got_values, got_classes in zip(values, classes):
            np.testing.assert_array_equal(got_classes, want_classes)
            np.testing.assert_allclose(got_values, want_values, rtol=1e-6)
            assert not np.any(got_classes == exclude[:, None])


def test_smoothing_targets_put_alpha_on_the_k_hardest_other_classes(mirrored):
    rng = np.random.default_rng(3)
    weights_matrix = rng.normal(size=(9, 4)).astype("float32")
    features = rng.normal(size=(4, 4)).astype("float32")
    # Each image's own row is its feature: its own class is the most similar,
    # and must still never be among the K smoothed classes.
    own = np.array([2, 8, 0, 5], np.int64)
    weights_matrix[own] = features
    want_classes, want_weights = numpy_smoothing_targets(weights_matrix, features, own, 3, 0.2)
    rows = weights_matrix / np.linalg.norm(weights_matrix, axis=1, keepdims=True)
    cosine = (features / np.linalg.norm(features, axis=1, keepdims=True)) @ rows.T
    width = 5  # 9 classes on 2 replicas: shards of 5, one padding column

    @tf.function
    def step():
        def fn():
            offset = _replica() * width
            local = np.pad(cosine, [[0, 0], [0, 1]])[:, offset:offset + width] / 0.15
            return hardest_class_targets(tf.constant(local, tf.float32), own, 3, 0.2,
                                         shard_offset=offset, num_classes=9)
        return mirrored.run(fn)

    classes, weights = step()
    for got_classes, got_weights in zip(_local_results(mirrored, classes),
                                        _local_results(mirrored, weights)):
        np.testing.assert_array_equal(got_classes, want_classes)
        np.testing.assert_allclose(got_weights, want_weights, rtol=1e-6)
        np.testing.assert_allclose(got_weights.sum(axis=1), 1.0, rtol=1e-6)
        assert not np.any(got_classes[:, 1:] == own[:, None])


FOUR_REPLICAS = """
import keras_ssl
from keras_ssl import distribute
distribute.split_cpu(4)
import json
import numpy as np
from tests.layers.test_sharded_classifier import classifier_problem, run_sharded_classifier
strategy = distribute.make_strategy("mirrored", cpu_replicas=4)
problem = classifier_problem(num_classes=10)
loss, grad_w, grad_f, classes, devices = run_sharded_classifier(strategy, *problem)
print(json.dumps({"loss": loss, "grad_w": grad_w.tolist(), "grad_f": grad_f.tolist(),
                  "classes": classes.tolist(), "devices": devices}))
"""


def test_classifier_gradients_equal_unsharded_on_4_replicas():
    # 10 classes on 4 replicas: shards of 3, the last with 2 padding rows.
    from tests.layers.test_sharded_classifier import classifier_problem

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", FOUR_REPLICAS], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    problem = classifier_problem(num_classes=10)
    loss, grad_w, grad_f, classes = unsharded_classifier_reference(*problem)
    assert len(set(got["devices"])) == 4
    np.testing.assert_array_equal(got["classes"], classes)
    np.testing.assert_allclose(got["loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(got["grad_w"], grad_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["grad_f"], grad_f, rtol=1e-4, atol=1e-6)

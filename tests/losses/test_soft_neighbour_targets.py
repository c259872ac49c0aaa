"""ASCL's soft targets against a NumPy copy of the official rule, and their invariants."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.losses import info_nce_loss
from keras_ssl.losses.logit_transforms import (ContrastiveLogits, contrastive_cross_entropy,
                                               queue_logits)
from keras_ssl.losses.soft_neighbour_targets import SoftNeighbourTargets
from keras_ssl.methods import StepContext

CTX = StepContext.at(0)
T1, T2 = 0.1, 0.05


def _unit(rows):
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def _log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def official_ascl(q, k, queue, *, type, nn_num, t1=T1, t2=T2):
    """model.py `_forward_moco` @b31e15b5 (lines 183-229), in NumPy float64.

    `queue` is [K, D] here (the official buffer is its transpose, [D, K]).
    Returns (loss, labels, c).
    """
    q, k, queue = (np.asarray(a, np.float64) for a in (q, k, queue))
    logits_pd = k @ queue.T / t2
    labels = np.zeros((len(k), queue.shape[0] + 1))
    labels[:, 0] = 1.0
    log_p = _log_softmax(logits_pd)
    p = np.exp(log_p)
    c = 1 - (-np.sum(p * log_p, axis=1, keepdims=True)) / np.log(queue.shape[0])
    nn_index = np.argsort(-logits_pd, axis=1, kind="stable")[:, :nn_num]
    hard = np.zeros_like(logits_pd)
    np.put_along_axis(hard, nn_index, 1.0, axis=1)
    if type == "ascl":
        labels[:, 1:] = np.minimum(nn_num * c * p, 1.0)
    elif type == "ahcl":
        labels[:, 1:] = hard * c
    elif type == "hard":
        labels[:, 1:] = hard
    labels = labels / labels.sum(axis=1, keepdims=True)
    logits = np.concatenate([np.sum(q * k, axis=1, keepdims=True), q @ queue.T], axis=1) / t1
    loss = -np.sum(labels * _log_softmax(logits), axis=1).mean()
    return loss, labels, c[:, 0]


def _data(batch=6, queue_size=20, dim=8, noise=0.3, seed=0):
    """Unit queries, keys near queue rows (so c is well above 0) and a unit queue."""
    rng = np.random.default_rng(seed)
    queue = _unit(rng.normal(size=(queue_size, dim)))
    keys = _unit(queue[rng.choice(queue_size, batch, replace=False)]
                 + noise * rng.normal(size=(batch, dim)))
    queries = _unit(keys + 0.5 * rng.normal(size=(batch, dim)))
    return tuple(a.astype("float32") for a in (queries, keys, queue))


def _apply(transform, queries, keys, queue):
    logits = queue_logits(queries, keys, queue, temperature=T1)
    return transform(logits, CTX)


@pytest.mark.parametrize("type", ["ascl", "ahcl", "hard", "normal"])
@pytest.mark.parametrize("nn_num", [1, 5])
def test_targets_confidence_and_loss_follow_the_official_rule(type, nn_num):
    queries, keys, queue = _data()
    result = _apply(SoftNeighbourTargets(type=type, relation_temperature=T2, nn_num=nn_num),
                    queries, keys, queue)
    loss, logs = contrastive_cross_entropy(result)
    expected_loss, expected_targets, expected_c = official_ascl(
        queries, keys, queue, type=type, nn_num=nn_num)
    np.testing.assert_allclose(result.targets, expected_targets, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(logs["ascl_confidence"], expected_c.mean(), rtol=1e-4)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    # The data exercise what the rule does: a confidence well inside (0, 1),
    # and at nn_num=5 the cap at 1 of some soft entries.
    assert 0.2 < expected_c.min() and expected_c.max() < 0.99
    if type == "ascl" and nn_num == 5:
        raw = nn_num * expected_c[:, None] * np.exp(_log_softmax(keys @ queue.T / T2))
        assert (raw > 1).any()
    if type != "normal":
        assert np.all(expected_targets[:, 1:].max(axis=1) > 1e-3)  # not MoCo's one-hot


@pytest.mark.parametrize("type", ["ascl", "ahcl", "hard", "normal"])
def test_targets_are_distributions_that_keep_the_positive_first(type):
    queries, keys, queue = _data(batch=8, queue_size=32, noise=0.6, seed=3)
    targets = np.asarray(_apply(SoftNeighbourTargets(type=type, nn_num=3),
                                queries, keys, queue).targets)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
    assert targets.min() >= 0.0
    # y_0 = 1 and every other y_j <= 1 before normalising.
    assert np.all(targets[:, :1] >= targets[:, 1:] - 1e-7)
    if type == "normal":
        np.testing.assert_array_equal(targets, np.eye(33)[[0] * 8])


@pytest.mark.parametrize("type", ["ascl", "ahcl", "normal"])
def test_zero_confidence_is_exactly_moco(type):
    # Identical queue rows: every key's relation to the queue is uniform,
    # H = log K and c = 0, so no mass leaves the positive (the official
    # code's behaviour while the queue is still random).
    queries, keys, queue = _data()
    queue = np.repeat(queue[:1], len(queue), axis=0)
    result = _apply(SoftNeighbourTargets(type=type), queries, keys, queue)
    loss, logs = contrastive_cross_entropy(result)
    assert abs(float(logs["ascl_confidence"])) < 1e-6
    np.testing.assert_allclose(result.targets, np.eye(queue.shape[0] + 1)[[0] * len(keys)],
                               atol=1e-6)
    np.testing.assert_allclose(loss, info_nce_loss(queries, keys, queue, temperature=T1),
                               rtol=1e-6)


def test_a_random_queue_gives_the_confidence_of_its_noise():
    # A random queue (the start of training). Cosines of random unit vectors
    # in D dimensions have variance 1/D, so k.Q / T2 has variance
    # s2 = 1 / (D T2^2); for Gaussian logits H(p) ~ log K - s2 / 2, so
    # c ~ s2 / (2 log K): 0.19 at D=128, T2=0.05, K=4096. Small, not 0: at
    # the official settings about 16% of the target mass starts on random
    # queue rows (c / (1 + c)).
    rng = np.random.default_rng(5)
    dim, queue_size = 128, 4096
    queue = _unit(rng.normal(size=(queue_size, dim))).astype("float32")
    keys = _unit(rng.normal(size=(16, dim))).astype("float32")
    result = _apply(SoftNeighbourTargets(), keys, keys, queue)
    _, targets, c = official_ascl(keys, keys, queue, type="ascl", nn_num=1)
    np.testing.assert_allclose(result.logs["ascl_confidence"], c.mean(), rtol=1e-3)
    np.testing.assert_allclose(result.targets, targets, rtol=1e-3, atol=1e-8)
    predicted = 1.0 / (dim * T2**2) / 2.0 / np.log(queue_size)
    assert abs(c.mean() - predicted) < 0.03, (c.mean(), predicted)


def test_no_gradient_flows_through_the_targets():
    # Logits that depend on the keys (no stop-gradient before the transform):
    # the gradient to the keys must be that of the cross-entropy with the
    # targets held constant, ignoring how the targets depend on the keys.
    queries, keys, queue = (tf.constant(a) for a in _data())
    transform = SoftNeighbourTargets(nn_num=5)

    def logits_of(k):
        scores = tf.concat([tf.reduce_sum(queries * k, 1, keepdims=True),
                            tf.matmul(queries, queue, transpose_b=True)], axis=1) / T1
        return ContrastiveLogits(logits=scores, targets=tf.one_hot([0] * 6, 21),
                                 queries=queries, positives=k, negatives=queue,
                                 temperature=T1)

    with tf.GradientTape() as tape:
        tape.watch(keys)
        transformed = transform(logits_of(keys), CTX)
        loss, _ = contrastive_cross_entropy(transformed)
    gradient = tape.gradient(loss, keys)
    constant = tf.constant(transformed.targets)
    with tf.GradientTape() as tape:
        tape.watch(keys)
        loss, _ = contrastive_cross_entropy(logits_of(keys).replace(targets=constant))
    np.testing.assert_allclose(gradient, tape.gradient(loss, keys), rtol=1e-5, atol=1e-7)
    # Without the stop-gradient the targets' path would add a term this large.
    with tf.GradientTape() as tape:
        tape.watch(keys)
        relation = tf.nn.log_softmax(tf.matmul(keys, queue, transpose_b=True) / T2)
        through_targets = -tf.reduce_sum(relation * tf.stop_gradient(
            tf.nn.log_softmax(logits_of(keys).logits)[:, 1:]))
    assert float(tf.reduce_max(tf.abs(tape.gradient(through_targets, keys)))) > 1e-2


def test_columns_after_the_queue_get_no_mass_and_masks_still_apply():
    queries, keys, queue = _data()
    plain = _apply(SoftNeighbourTargets(nn_num=5), queries, keys, queue)
    # Two synthetic negatives appended by an earlier transform.
    logits = queue_logits(queries, keys, queue, temperature=T1)
    extra = tf.concat([logits.logits, tf.zeros([6, 2])], axis=1)
    widened = SoftNeighbourTargets(nn_num=5)(
        logits.replace(logits=extra, targets=tf.one_hot([0] * 6, 23)), CTX)
    np.testing.assert_array_equal(widened.targets[:, :21], plain.targets)
    np.testing.assert_array_equal(widened.targets[:, 21:], 0.0)
    # A mask (a false-negative filter) drops a column's mass; the rest renormalises.
    mask = np.ones((6, 21), bool)
    mask[:, 1:4] = False
    masked, _ = contrastive_cross_entropy(plain.replace(mask=tf.constant(mask)))
    targets = np.where(mask, np.asarray(plain.targets, np.float64), 0.0)
    targets /= targets.sum(1, keepdims=True)
    scores = np.where(mask, np.asarray(plain.logits, np.float64), -1e9)
    np.testing.assert_allclose(masked, -np.mean(np.sum(targets * _log_softmax(scores), 1)),
                               rtol=1e-5)


def test_runs_compiled_with_xla():
    queries, keys, queue = _data()
    transform = SoftNeighbourTargets(type="ahcl", nn_num=2)

    @tf.function(jit_compile=True)
    def compiled(q, k, neg):
        result = transform(queue_logits(q, k, neg, temperature=T1), CTX)
        return result.targets, result.logs["ascl_confidence"]

    targets, confidence = compiled(queries, keys, queue)
    eager = _apply(transform, queries, keys, queue)
    np.testing.assert_allclose(targets, eager.targets, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(confidence, eager.logs["ascl_confidence"], rtol=1e-5)


def test_config_round_trip_and_bad_arguments():
    transform = SoftNeighbourTargets(type="hard", relation_temperature=0.1, nn_num=3)
    assert transform.get_config() == dict(type="hard", relation_temperature=0.1, nn_num=3)
    again = SoftNeighbourTargets.from_config(transform.get_config())
    assert (again.type, again.relation_temperature, again.nn_num) == ("hard", 0.1, 3)
    with pytest.raises(ValueError, match="ascl, ahcl, hard, normal"):
        SoftNeighbourTargets(type="soft")
    with pytest.raises(ValueError, match="int >= 1"):
        SoftNeighbourTargets(nn_num=0)
    with pytest.raises(ValueError, match="int >= 1"):
        SoftNeighbourTargets(nn_num=1.5)
    with pytest.raises(ValueError, match="positive"):
        SoftNeighbourTargets(relation_temperature=0.0)
    with pytest.raises(TypeError, match="keyword"):
        SoftNeighbourTargets("ascl")
    queries, keys, queue = _data(queue_size=6)
    with pytest.raises(ValueError, match="nn_num=7"):
        _apply(SoftNeighbourTargets(type="hard", nn_num=7), queries, keys, queue)
    logits = queue_logits(queries, keys, queue, temperature=T1)
    with pytest.raises(ValueError, match="queue layout"):
        SoftNeighbourTargets()(logits.replace(negatives=None), CTX)


def test_docstring_example():
    import doctest

    from keras_ssl.losses import soft_neighbour_targets

    result = doctest.testmod(soft_neighbour_targets)
    assert result.attempted > 0 and result.failed == 0

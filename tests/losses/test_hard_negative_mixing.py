"""MoCHi's hard negative mixing: the NumPy rule, each query's own hard set, no gradient, warm-up."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.losses import info_nce_loss
from keras_ssl.losses.hard_negative_mixing import (MIXING_STREAM, HardNegativeMixing, MixingDraws,
                                                   draw_mixing, hard_set, mix_hard_negatives,
                                                   synthetic_negatives)
from keras_ssl.losses.logit_transforms import (ContrastiveLogits, batch_logits,
                                               contrastive_cross_entropy, queue_logits)
from keras_ssl.methods import StepContext

RNG = np.random.default_rng(0)
T = 0.2


def _unit(rows):
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


QUERIES = RNG.normal(size=(4, 6)).astype("float32")
KEYS = RNG.normal(size=(4, 6)).astype("float32")
QUEUE = _unit(RNG.normal(size=(10, 6))).astype("float32")


def _numpy_cross_entropy(logits, mask):
    """Mean -log softmax of column 0 over the columns `mask` keeps (target one-hot on 0)."""
    logits = np.where(mask, logits.astype("float64"), -np.inf)
    top = logits.max(1, keepdims=True)
    log_normaliser = top[:, 0] + np.log(np.exp(logits - top).sum(1))
    return float(np.mean(log_normaliser - logits[:, 0]))


def _numpy_mixing(queries, queue, draws, num_hard):
    """NumPy copy of the rule: per query, its top-N queue rows by q.n, then h and h'."""
    q = _unit(queries.astype("float64"))
    hard = np.argsort(-(q @ queue.T), axis=1, kind="stable")[:, :num_hard]
    rows = np.arange(len(q))[:, None]
    first = queue[hard[rows, draws["first"]]]
    second = queue[hard[rows, draws["second"]]]
    alpha = draws["alpha"][..., None]
    mixed = _unit(alpha * first + (1 - alpha) * second)
    beta = draws["beta"][..., None]
    query_mixed = _unit(beta * q[:, None] + (1 - beta) * queue[hard[rows, draws["partner"]]])
    return q, hard, np.concatenate([mixed, query_mixed], axis=1)


FIXED = dict(first=np.array([[0, 2, 1], [1, 0, 2], [2, 2, 0], [0, 1, 1]], "int32"),
             second=np.array([[1, 0, 2], [2, 1, 0], [0, 1, 1], [2, 0, 2]], "int32"),
             alpha=np.array([[0.1, 0.5, 0.9], [0.3, 0.7, 0.2], [0.6, 0.4, 0.8], [0.05, 0.95, 0.5]],
                            "float32"),
             partner=np.array([[0, 2], [1, 1], [2, 0], [1, 2]], "int32"),
             beta=np.array([[0.1, 0.45], [0.2, 0.3], [0.0, 0.25], [0.49, 0.15]], "float32"))


def _draws(values):
    return MixingDraws(**{name: tf.constant(value) for name, value in values.items()})


def test_fixed_draws_give_the_numpy_logits_and_loss():
    logits = queue_logits(QUERIES, KEYS, QUEUE, temperature=T)
    out = mix_hard_negatives(logits, _draws(FIXED), num_hard=3)
    q, hard, synthetic = _numpy_mixing(QUERIES, QUEUE, FIXED, num_hard=3)
    # The queries' hard sets differ, so a shared set (MaugrimEP's bug) would fail here.
    assert len({tuple(sorted(row)) for row in hard}) > 1
    np.testing.assert_array_equal(hard_set(logits, 3).numpy(), hard)
    expected_new = np.einsum("bd,bsd->bs", q, synthetic) / T
    np.testing.assert_allclose(out.logits[:, :11], logits.logits, rtol=1e-6)
    np.testing.assert_allclose(out.logits[:, 11:], expected_new, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.targets[:, 11:], np.zeros((4, 5)))
    np.testing.assert_array_equal(out.targets[:, 0], np.ones(4))
    assert out.mask.numpy().all()
    raw = np.concatenate([logits.logits.numpy(), expected_new], axis=1)
    loss, logs = contrastive_cross_entropy(out)
    np.testing.assert_allclose(loss, _numpy_cross_entropy(raw, np.ones(raw.shape, bool)),
                               rtol=1e-5)
    np.testing.assert_allclose(logs["mochi_synthetic_cosine"], np.mean(expected_new * T),
                               rtol=1e-5)
    np.testing.assert_allclose(logs["mochi_above_positive"],
                               np.mean(expected_new > raw[:, :1]), rtol=1e-6)


def test_synthetic_points_are_unit_norm_and_the_draws_in_range():
    draws = draw_mixing(tf.constant([5, 9]), tf.constant(2000), num_hard=4, num_mixed=3,
                        num_query_mixed=2)
    first, second = draws.first.numpy(), draws.second.numpy()
    assert first.min() == 0 and first.max() == 3 and draws.partner.numpy().max() == 3
    assert (first != second).all()  # pairs are drawn without replacement
    # Every ordered pair of distinct positions occurs, about equally often.
    counts = np.bincount((first * 4 + second).ravel(), minlength=16).reshape(4, 4)
    assert (np.diag(counts) == 0).all()
    off_diagonal = counts[~np.eye(4, dtype=bool)]
    assert off_diagonal.min() > 0.7 * off_diagonal.mean()
    alpha, beta = draws.alpha.numpy(), draws.beta.numpy()
    assert 0 <= alpha.min() and alpha.max() < 1 and alpha.mean() == pytest.approx(0.5, abs=0.02)
    assert 0 <= beta.min() and beta.max() < 0.5 and beta.max() > 0.49
    logits = queue_logits(QUERIES, KEYS, QUEUE, temperature=T)
    local = draws.rows(0, 4)
    np.testing.assert_allclose(np.linalg.norm(synthetic_negatives(logits, local, 4), axis=-1),
                               1.0, rtol=1e-6)


def test_each_query_mixes_only_its_own_hard_set():
    # Queue row r is the basis vector e_r; query b leans on rows 3b..3b+2
    # only, so its top 3 are exactly those and every h it gets lives on those
    # coordinates. A query that mixed another's set (MaugrimEP indexes query
    # 0's for all) would put weight elsewhere.
    queue = np.eye(12, dtype="float32")
    queries = np.zeros((4, 12), "float32")
    for b in range(4):
        queries[b, 3 * b:3 * b + 3] = [1.0, 0.8, 0.6]
    keys = RNG.normal(size=(4, 12)).astype("float32")
    mixing = HardNegativeMixing(num_hard=3, num_mixed=16, num_query_mixed=8)
    out = mixing(queue_logits(queries, keys, queue, temperature=T), StepContext.at(7))
    logits = queue_logits(queries, keys, queue, temperature=T)
    draws = draw_mixing(tf.random.experimental.stateless_fold_in(
        StepContext.at(7).seed_for(MIXING_STREAM), 0), tf.constant(4), num_hard=3, num_mixed=16,
        num_query_mixed=8)
    synthetic = synthetic_negatives(logits, draws, 3).numpy()
    for b in range(4):
        own = np.zeros(12, bool)
        own[3 * b:3 * b + 3] = True
        np.testing.assert_allclose(synthetic[b][:, ~own], 0.0, atol=1e-7)
        # Each h mixes two different rows: two non-zero coordinates.
        assert ((np.abs(synthetic[b, :16]) > 1e-6).sum(axis=1) == 2).all()
    # The transform appended exactly these points' logits (same seed stream).
    np.testing.assert_allclose(out.logits[:, 13:],
                               np.einsum("bd,bsd->bs", _unit(queries), synthetic) / T,
                               rtol=1e-5, atol=1e-6)


def test_no_gradient_reaches_the_queue_or_the_query_inside_h():
    queries = tf.constant(_unit(QUERIES))
    queue = tf.constant(QUEUE)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([queries, queue])
        # Built by hand, without queue_logits' stop_gradient on the queue, so
        # only the transform can cut the paths.
        scores = tf.concat([tf.reduce_sum(queries * _unit(KEYS), 1, keepdims=True),
                            tf.matmul(queries, queue, transpose_b=True)], axis=1) / T
        logits = ContrastiveLogits(logits=scores, targets=tf.one_hot([0] * 4, 11),
                                   queries=queries, negatives=queue, temperature=T)
        out = mix_hard_negatives(logits, _draws(FIXED), num_hard=3)
        total = tf.reduce_sum(out.logits[:, 11:])
    # Zero (not None): the slice of the concatenated logits still links the
    # queue's own columns to the graph, with zero weight.
    to_queue = tape.gradient(total, queue)
    assert to_queue is None or not np.any(to_queue.numpy())
    # d/dq of sum_k q.h_k / t with every h (and h') a constant: sum_k h_k / t.
    # A live q inside h' would add terms.
    _, _, synthetic = _numpy_mixing(QUERIES, QUEUE, FIXED, num_hard=3)
    np.testing.assert_allclose(tape.gradient(total, queries), synthetic.sum(1) / T,
                               rtol=1e-5, atol=1e-5)


def test_warm_up_is_moco_exactly_then_mixing_starts():
    mixing = HardNegativeMixing(num_hard=3, num_mixed=4, num_query_mixed=2, start_epoch=1)
    queries = tf.constant(QUERIES)

    def loss_and_gradient(step, transform=mixing):
        ctx = StepContext.at(step, steps_per_epoch=4)
        with tf.GradientTape() as tape:
            tape.watch(queries)
            logits = queue_logits(queries, KEYS, QUEUE, temperature=T)
            loss, _ = contrastive_cross_entropy(transform(logits, ctx) if transform else logits)
        return loss.numpy(), tape.gradient(loss, queries).numpy()

    moco_loss, moco_gradient = loss_and_gradient(3, transform=None)
    np.testing.assert_allclose(moco_loss, info_nce_loss(QUERIES, KEYS, QUEUE, temperature=T),
                               rtol=1e-6)
    warm_loss, warm_gradient = loss_and_gradient(3)  # epoch 0: masked out
    np.testing.assert_allclose(warm_loss, moco_loss, rtol=1e-6)
    np.testing.assert_allclose(warm_gradient, moco_gradient, rtol=1e-5, atol=1e-7)
    mixed_loss, _ = loss_and_gradient(4)  # epoch 1: the synthetic columns count
    assert mixed_loss > moco_loss + 1e-3
    by_step = HardNegativeMixing(num_hard=3, num_mixed=4, num_query_mixed=2, start_step=4)
    np.testing.assert_allclose(loss_and_gradient(3, by_step)[0], moco_loss, rtol=1e-6)
    np.testing.assert_allclose(loss_and_gradient(4, by_step)[0], mixed_loss, rtol=1e-6)


def test_masked_queue_columns_never_enter_the_hard_set():
    logits = queue_logits(QUERIES, KEYS, QUEUE, temperature=T)
    best = hard_set(logits, 1).numpy()[:, 0]
    mask = np.ones((4, 11), bool)
    mask[np.arange(4), 1 + best] = False  # an earlier transform dropped each query's top row
    hard = hard_set(logits.replace(mask=tf.constant(mask)), 3).numpy()
    assert not (hard == best[:, None]).any()
    out = mix_hard_negatives(logits.replace(mask=tf.constant(mask)), _draws(FIXED), num_hard=3)
    np.testing.assert_array_equal(out.mask[:, :11], mask)


def test_without_synthetic_points_nothing_changes():
    logits = queue_logits(QUERIES, KEYS, QUEUE, temperature=T)
    mixing = HardNegativeMixing(num_hard=5, num_mixed=0, num_query_mixed=0)
    assert mixing(logits, StepContext.at(0)) is logits and mixing.log_names == ()


def test_directions_and_steps_draw_differently():
    logits = queue_logits(QUERIES, KEYS, QUEUE, temperature=T)
    mixing = HardNegativeMixing(num_hard=5, num_mixed=6, num_query_mixed=3)
    first = mixing(logits, StepContext.at(2)).logits.numpy()
    np.testing.assert_array_equal(mixing(logits, StepContext.at(2)).logits, first)
    assert not np.allclose(mixing(logits.replace(direction=1), StepContext.at(2)).logits, first)
    assert not np.allclose(mixing(logits, StepContext.at(3)).logits, first)


def test_two_replicas_mix_what_one_does():
    mixing = HardNegativeMixing(num_hard=4, num_mixed=5, num_query_mixed=3)
    ctx = StepContext.at(5)
    whole = mixing(queue_logits(QUERIES, KEYS, QUEUE, temperature=T), ctx).logits.numpy()
    strategy = distribute.make_strategy("mirrored", cpu_replicas=2)

    def rows(context):
        start = 2 * context.replica_id_in_sync_group
        return QUERIES[start:start + 2], KEYS[start:start + 2]

    queries, keys = strategy.experimental_distribute_values_from_function(
        lambda context: rows(context)[0]), strategy.experimental_distribute_values_from_function(
        lambda context: rows(context)[1])
    per_replica = strategy.run(
        lambda q, k: mixing(queue_logits(q, k, QUEUE, temperature=T), ctx).logits,
        args=(queries, keys))
    np.testing.assert_allclose(
        np.concatenate([t.numpy() for t in strategy.experimental_local_results(per_replica)]),
        whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arguments, message", [
    (dict(num_hard=1, num_mixed=2), "distinct"),
    (dict(num_hard=0), "num_hard"),
    (dict(num_mixed=-1), "num_mixed"),
    (dict(num_query_mixed=2.5), "num_query_mixed"),
    (dict(start_epoch=1, start_step=3), "not both"),
])
def test_bad_arguments_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        HardNegativeMixing(**arguments)


def test_misuse_at_call_time_is_explained():
    logits = queue_logits(QUERIES, KEYS, QUEUE, temperature=T)
    with pytest.raises(ValueError, match="exceeds the 10 negatives"):
        HardNegativeMixing(num_hard=11, num_mixed=2)(logits, StepContext.at(0))
    with pytest.raises(ValueError, match="steps per epoch"):
        HardNegativeMixing(num_hard=3, start_epoch=2)(logits, StepContext.at(0))
    simclr = batch_logits(QUERIES, QUERIES, KEYS, 0, temperature=T)
    with pytest.raises(ValueError, match="queue"):
        HardNegativeMixing(num_hard=3)(simclr, StepContext.at(0))


def test_config_round_trip_and_registry_spec():
    from keras_ssl import methods

    mixing = HardNegativeMixing(num_hard=8, num_mixed=4, start_step=3)
    assert HardNegativeMixing.from_config(mixing.get_config()).get_config() == \
        mixing.get_config()
    built, = methods.make_logit_transforms([{"mochi": {"num_hard": 8, "num_mixed": 4}}])
    assert isinstance(built, HardNegativeMixing) and built.num_hard == 8

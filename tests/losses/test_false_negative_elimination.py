"""IFND's false negative elimination: the NumPy rule on a SimCLR batch and a MoCo queue."""

import doctest

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.layers import pseudo_labels
from keras_ssl.losses import false_negative_elimination, nt_xent_loss
from keras_ssl.losses.false_negative_elimination import (FalseNegativeElimination,
                                                         accept_most_confident,
                                                         acceptance_rate)
from keras_ssl.losses.logit_transforms import (batch_logits, contrastive_cross_entropy,
                                               directions_cross_entropy, large_negative,
                                               queue_logits, transform_directions)
from keras_ssl.methods import RunContext, StepContext

RNG = np.random.default_rng(0)
NUM_EXAMPLES = 12
CTX = StepContext.at(5)


def _unit(rows):
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _transform(labels, accepted, **kwargs):
    """An attached transform whose table holds `labels` [L, N] and `accepted` [N]."""
    transform = FalseNegativeElimination(cluster_counts=(2, 3, 4)[:len(labels)], **kwargs)
    state = transform.make_state(RunContext(num_examples=NUM_EXAMPLES, steps_per_epoch=1,
                                            epochs=4))
    state.assign(labels, accepted, epoch=1)
    return transform


def _numpy_removed(mask, targets, anchor_index, column_index, labels, accepted):
    """Brute force: which (row, column) pairs the rule removes."""
    removed = np.zeros(mask.shape, bool)
    for i, anchor in enumerate(anchor_index):
        for k, column in enumerate(column_index):
            if not mask[i, k] or targets[i, k] > 0 or column < 0:
                continue
            shares_a_label = any(labels[level, anchor] == labels[level, column]
                                 for level in range(len(labels)))
            removed[i, k] = accepted[anchor] and accepted[column] and shares_a_label
    return removed


def _numpy_cross_entropy(logits, targets, mask):
    logits = np.where(mask, logits.astype("float64"), -np.inf)
    top = logits.max(1, keepdims=True)
    log_softmax = logits - top - np.log(np.exp(logits - top).sum(1, keepdims=True))
    log_softmax = np.where(mask, log_softmax, 0.0)  # masked columns hold no target mass
    return float(np.mean(-np.sum(targets * log_softmax, axis=1)))


# Three levels with few clusters (labels collide often); every example is
# accepted but 0, 2, 8 and 11, so each batch below has anchors of both kinds.
LABELS = np.stack([RNG.integers(0, k, NUM_EXAMPLES) for k in (2, 3, 4)]).astype("int32")
ACCEPTED = ~np.isin(np.arange(NUM_EXAMPLES), [0, 2, 8, 11])


def _check_against_numpy(before, after, labels, accepted):
    mask = (np.ones(before.logits.shape, bool) if before.mask is None
            else before.mask.numpy())
    targets = before.targets.numpy()
    removed = _numpy_removed(mask, targets, before.index.numpy(),
                             before.column_index.numpy(), labels, accepted)
    assert removed.any(), "the case removes nothing: it could not catch a wrong rule"
    np.testing.assert_array_equal(after.mask.numpy(), mask & ~removed)
    # Rows of unaccepted anchors are untouched; so is every column with target mass.
    unaccepted = ~accepted[before.index.numpy()]
    assert unaccepted.any()
    np.testing.assert_array_equal(after.mask.numpy()[unaccepted], mask[unaccepted])
    assert after.mask.numpy()[targets > 0].all()
    raw = before.logits.numpy()
    np.testing.assert_array_equal(after.logits.numpy()[~removed], raw[~removed])
    assert (after.logits.numpy()[removed] == -1e9).all()
    loss, logs = contrastive_cross_entropy(after)
    np.testing.assert_allclose(loss, _numpy_cross_entropy(raw, targets, mask & ~removed),
                               rtol=1e-5)
    candidates = mask & (targets <= 0)
    np.testing.assert_allclose(logs["false_negative_fraction"],
                               removed.sum() / candidates.sum(), rtol=1e-6)
    np.testing.assert_allclose(logs["accepted_fraction"], np.mean(~unaccepted), rtol=1e-6)
    return removed


@pytest.mark.parametrize("offset", [0, 3])
def test_simclr_batch_removes_what_the_numpy_rule_removes(offset):
    # A global batch of 6 examples; this replica holds rows offset..offset+2.
    global_index = np.array([7, 2, 9, 4, 0, 5])
    rng = np.random.default_rng(1)
    a = rng.normal(size=(6, 5)).astype("float32")
    b = rng.normal(size=(6, 5)).astype("float32")
    local = slice(offset, offset + 3)
    transform = _transform(LABELS, ACCEPTED)
    for anchors, same, other in ((a, a, b), (b, b, a)):
        before = batch_logits(anchors[local], same, other, offset, temperature=0.5,
                              index=tf.constant(global_index[local]),
                              global_index=tf.constant(global_index))
        after = transform(before, CTX)
        removed = _check_against_numpy(before, after, LABELS, ACCEPTED)
        # The anchor's own positive (column offset + i) and the anchor itself
        # (column 6 + offset + i, already masked) are never removed.
        rows = np.arange(3)
        assert not removed[rows, offset + rows].any()
        assert not after.mask.numpy()[rows, 6 + offset + rows].any()


def test_moco_queue_removes_what_the_numpy_rule_removes():
    index = np.array([3, 8, 1, 10])
    # Rows never written (-1), and an older key of anchor 3's own example.
    negative_index = np.array([0, -1, 3, 5, 11, 2, -1, 6, 9, 4])
    rng = np.random.default_rng(2)
    queries = rng.normal(size=(4, 5)).astype("float32")
    keys = rng.normal(size=(4, 5)).astype("float32")
    queue = _unit(rng.normal(size=(10, 5))).astype("float32")
    before = queue_logits(queries, keys, queue, temperature=0.2, index=tf.constant(index),
                          negative_index=tf.constant(negative_index))
    np.testing.assert_array_equal(before.column_index.numpy(), [-1, *negative_index])
    # Example 0 accepted: a -1 read as row 0 would then remove rows never written.
    accepted = ACCEPTED | (np.arange(NUM_EXAMPLES) == 0)
    after = _transform(LABELS, accepted)(before, CTX)
    removed = _check_against_numpy(before, after, LABELS, accepted)
    assert not removed[:, 0].any()  # the positive key
    assert not removed[:, [2, 7]].any()  # queue rows without an example
    assert removed[0, 1 + 2]  # anchor 3's own older key: same image, both accepted


def test_a_label_shared_at_any_one_level_is_enough():
    # Examples 0 and 1 agree only at the coarse level, 0 and 2 only at the
    # fine one, 0 and 3 at none; all accepted.
    labels = np.array([[0, 0, 1, 1], [0, 1, 0, 2]], "int32")
    labels = np.pad(labels, ((0, 0), (0, NUM_EXAMPLES - 4)), constant_values=9)
    before = queue_logits(np.eye(1, 5, dtype="float32"), np.eye(1, 5, dtype="float32"),
                          _unit(RNG.normal(size=(3, 5))).astype("float32"), temperature=0.2,
                          index=tf.constant([0]), negative_index=tf.constant([1, 2, 3]))
    after = _transform(labels, np.ones(NUM_EXAMPLES, bool))(before, CTX)
    assert after.mask.numpy().tolist() == [[True, False, False, True]]


def test_with_nothing_accepted_the_loss_is_simclrs_exactly():
    a = RNG.normal(size=(6, 5)).astype("float32")
    b = RNG.normal(size=(6, 5)).astype("float32")
    index = tf.constant([7, 2, 9, 4, 0, 5])
    directions = tuple(
        batch_logits(x, x, y, 0, temperature=0.5, index=index,
                     global_index=index).replace(direction=i)
        for i, (x, y) in enumerate(((a, b), (b, a))))
    plain, _ = directions_cross_entropy(directions)
    transform = _transform(LABELS, np.zeros(NUM_EXAMPLES, bool))
    loss, logs = directions_cross_entropy(transform_directions(directions, [transform], CTX))
    assert float(loss) == float(plain)
    assert float(logs["false_negative_fraction"]) == 0.0
    np.testing.assert_allclose(loss, nt_xent_loss(a, b, a, b, 0, temperature=0.5), rtol=1e-6)


def test_removal_is_finite_in_float16():
    assert np.isfinite(large_negative(tf.float16).numpy())
    assert float(large_negative(tf.float32)) == -1e9
    before = queue_logits(RNG.normal(size=(4, 5)).astype("float32"),
                          RNG.normal(size=(4, 5)).astype("float32"),
                          _unit(RNG.normal(size=(6, 5))).astype("float32"), temperature=0.2,
                          index=tf.constant([0, 1, 2, 3]),
                          negative_index=tf.constant([4, 5, 6, 7, 8, 9]))
    half = before.replace(logits=tf.cast(before.logits, tf.float16),
                          targets=tf.cast(before.targets, tf.float16))
    after = _transform(LABELS, np.ones(NUM_EXAMPLES, bool))(half, CTX)
    assert not after.mask.numpy().all()
    loss, _ = contrastive_cross_entropy(after)
    assert after.logits.dtype == tf.float16 and np.isfinite(float(loss))


def test_acceptance_grows_linearly_from_the_first_epoch_to_the_last():
    np.testing.assert_allclose([acceptance_rate(e, 4) for e in range(4)], [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose([acceptance_rate(e, 3, initial=0.2, final=0.6) for e in range(3)],
                               [0.2, 0.4, 0.6])
    assert acceptance_rate(0, 1) == 0.0 and acceptance_rate(0, 1, initial=0.5) == 0.5
    assert acceptance_rate(7, 4) == 1.0  # past the last epoch


def test_the_most_confident_share_is_accepted():
    confidence = RNG.uniform(size=20)
    for rate in (0.0, 0.26, 0.5, 1.0):
        accepted = accept_most_confident(confidence, rate)
        count = int(np.floor(rate * 20 + 0.5))
        assert accepted.sum() == count
        if 0 < count < 20:
            assert confidence[accepted].min() > confidence[~accepted].max()
    # Ties: the lower index first.
    assert accept_most_confident(np.array([1.0, 1.0, 1.0]), 1 / 3).tolist() == [True, False,
                                                                                   False]


def test_arguments_are_checked_and_the_state_belongs_to_one_method():
    with pytest.raises(ValueError, match="cluster_counts"):
        FalseNegativeElimination(cluster_counts=())
    with pytest.raises(ValueError, match="final_acceptance"):
        FalseNegativeElimination(final_acceptance=1.5)
    transform = FalseNegativeElimination(cluster_counts=(2,))
    with pytest.raises(ValueError, match="num_examples"):
        transform.make_state(RunContext())
    transform.make_state(RunContext(num_examples=4))
    with pytest.raises(ValueError, match="one per method"):
        transform.make_state(RunContext(num_examples=4))
    with pytest.raises(ValueError, match="column_index"):
        transform(queue_logits(np.eye(1, 3, dtype="float32"), np.eye(1, 3, dtype="float32"),
                               np.eye(2, 3, dtype="float32"), temperature=0.2,
                               index=tf.constant([0])), CTX)


def test_the_docstring_examples_hold():
    for module in (false_negative_elimination, pseudo_labels):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__

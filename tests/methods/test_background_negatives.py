"""BG_Swaps' extra negatives reach MoCo's loss, agree on 1 and 2 replicas, and are refused elsewhere."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.methods import Batch
from tests.methods import harness


def swap_batches(used, num_batches=2, seed=0):
    """The harness' two 16-px views plus an extra negative per row and its flag."""
    rng = np.random.default_rng(seed)
    count = num_batches * harness.GLOBAL_BATCH
    views = tuple(rng.uniform(size=(count, 16, 16, 3)).astype("float32") for _ in range(2))
    indices = rng.permutation(harness.NUM_EXAMPLES)[:count].astype("int64")
    negative = rng.uniform(size=(count, 16, 16, 3)).astype("float32")
    return tf.data.Dataset.from_tensor_slices(
        {"views": views, "index": indices, "label": indices % 3, "negative_view": negative,
         "negative_used": np.resize(used, count).astype("float32")}).batch(harness.GLOBAL_BATCH,
                                                          drop_remainder=True)


def first_step_loss(name, dataset):
    model = harness.build(name)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    element = next(iter(dataset))
    ctx = model.step_context(training=True)
    return float(model.loss(model.forward(Batch.from_element(element), ctx), ctx)[0])


def test_a_used_extra_negative_raises_moco_loss_and_an_unused_one_changes_nothing():
    rows = harness.GLOBAL_BATCH
    unused = first_step_loss("moco_v2", swap_batches(np.zeros(rows, bool), 1))
    used = first_step_loss("moco_v2", swap_batches(np.ones(rows, bool), 1))
    without = first_step_loss("moco_v2", swap_batches(np.ones(rows, bool), 1).map(
        lambda e: {k: e[k] for k in ("views", "index", "label")}))
    assert unused == pytest.approx(without, rel=1e-6)
    # One more term in every row's softmax denominator.
    assert used > without + 1e-4


def _fit(strategy, dataset):
    with strategy.scope():
        model = harness.build("moco_v2")
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
        model.optimizer.build(model.trainable_variables)
    history = model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    return model, history.history


def test_one_and_two_replicas_agree_with_extra_negatives():
    used = np.array([True, False] * (harness.GLOBAL_BATCH // 2))
    single, single_history = _fit(tf.distribute.get_strategy(), swap_batches(used))
    mirrored, mirrored_history = _fit(harness.mirrored_strategy(), swap_batches(used))
    np.testing.assert_allclose(mirrored_history["loss"], single_history["loss"], rtol=1e-4)
    expected, actual = harness.weights_by_path(single), harness.weights_by_path(mirrored)
    for path in expected:
        np.testing.assert_allclose(actual[path], expected[path], rtol=1e-3, atol=5e-5,
                                   err_msg=path)
    assert distribute.num_replicas() == 1


def test_a_method_without_negatives_refuses_them():
    with pytest.raises(ValueError, match="BYOL has no negatives"):
        _fit_name("byol", swap_batches(np.ones(harness.GLOBAL_BATCH, bool), 1))


def _fit_name(name, dataset):
    model = harness.build(name)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.fit(dataset, epochs=1, verbose=0, shuffle=False)

"""HierMatch: the split heads' gradients, withheld labels per level, its EMA and decay, the
per-level loss against NumPy, both bases with a labeled stream, 1 vs 2 replicas."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.data.hierarchy import known_levels
from keras_ssl.methods import StepContext
from keras_ssl.methods.fixmatch import ClassifierHeads
from tests.methods.test_fixmatch import (RUN, assert_replicas_agree, build, fit_with_labels,
                                         one_batch, softmax)

# Three fine classes under two coarse ones; half the labeled rows coarse-only.
CONFIG = dict(hierarchy=[[0, 0, 1]], level_fractions=[0.5, 0.5], ema_decay=0.9,
              weight_decay=0.02)


def test_split_heads_pass_gradient_to_their_own_chunk_only():
    heads = ClassifierHeads((4, 3, 2), split_features=True)
    features = tf.Variable(np.random.default_rng(0).normal(size=(2, 9)).astype("float32"))
    heads.build((None, 9))
    # wideresnet.py model_bn_3: coarsest <- [x1, x2.detach(), x3.detach()],
    # middle <- [x2, x3.detach()], fine <- x3.
    own_columns = {2: range(0, 3), 1: range(3, 6), 0: range(6, 9)}
    for level, columns in own_columns.items():
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(heads(features)[level])
        gradient = np.abs(tape.gradient(total, features).numpy()).sum(0)
        assert set(np.flatnonzero(gradient)) == set(columns), level
    assert [layer.kernel.shape[0] for layer in heads.dense] == [3, 6, 9]


def test_withheld_fine_labels_supervise_the_coarse_level_only():
    model = build("hiermatch", **CONFIG)
    batch = one_batch()
    fine, coarse = (labels.numpy() for labels in
                    model.level_labels(batch.labeled.label, batch.labeled.index))
    levels = known_levels(batch.labeled.index.numpy(), (0.5, 0.5), RUN.seed)
    expected_fine = np.where(levels == 0, batch.labeled.label.numpy(), -1)
    np.testing.assert_array_equal(fine, expected_fine)
    np.testing.assert_array_equal(coarse, np.array([0, 0, 1])[batch.labeled.label.numpy()])


def test_ema_averages_batch_norm_statistics_and_the_decay_shrinks_every_online_variable():
    model = build("hiermatch", **CONFIG)
    online = [*model.encoder.weights, *model.heads.weights]
    copies = [*model.ema_encoder.weights, *model.ema_heads.weights]
    rng = np.random.default_rng(0)
    for variable in online:
        variable.assign(variable + rng.normal(size=variable.shape).astype("float32"))
    # The training-mode forward moves the moving statistics: read after it.
    outputs = model.forward(one_batch(), StepContext.at(0))
    before = [v.numpy() for v in online]
    start = [c.numpy() for c in copies]
    model.after_apply(outputs.__class__(learning_rate=tf.constant(0.5)), StepContext.at(0))
    # train.py:471-478: ema = 0.9 ema + 0.1 param (every float tensor, BN buffers
    # included), then param *= 1 - 0.02 lr.
    for variable, copy, value, initial in zip(online, copies, before, start):
        np.testing.assert_allclose(copy, 0.9 * initial + 0.1 * value, rtol=1e-5, atol=1e-6,
                                   err_msg=copy.path)
        np.testing.assert_allclose(variable, value * (1 - 0.02 * 0.5), rtol=1e-6,
                                   err_msg=variable.path)
    assert any("moving_mean" in c.path for c in copies)


def test_mixmatch_base_loss_sums_the_levels_with_withheld_rows_as_unlabeled():
    model = build("hiermatch", **CONFIG)
    ctx = StepContext.at(2)
    outputs = model.forward(one_batch(), ctx)
    loss, logs = model.loss(outputs, ctx)
    expected_x, expected_u = 0.0, 0.0
    for level in range(2):
        known = outputs.labeled_known[level].numpy()
        logits_x = outputs.labeled_logits[level].numpy().astype("float64")
        targets_x = outputs.labeled_targets[level].numpy().astype("float64")
        logits_u = np.concatenate([outputs.unlabeled_logits[level].numpy(), logits_x[~known]])
        targets_u = np.concatenate([outputs.unlabeled_targets[level].numpy(), targets_x[~known]])
        expected_x += np.mean(-np.sum(targets_x[known] * np.log(softmax(logits_x[known])), 1))
        expected_u += np.mean((softmax(logits_u.astype("float64")) - targets_u) ** 2)
    assert not outputs.labeled_known[0].numpy().all() and outputs.labeled_known[1].numpy().all()
    ramp = 2 / RUN.total_steps  # over the whole run (train.py:443-448)
    np.testing.assert_allclose(logs["supervised_loss"], expected_x, rtol=1e-5)
    np.testing.assert_allclose(loss, expected_x + 150.0 * ramp * expected_u, rtol=1e-5)
    # Its trackers are the MixMatch base's: no FixMatch mask rate stuck at 0.
    assert "unlabeled_weight" in model.log_trackers and "mask_rate" not in model.log_trackers


def test_fixmatch_base_runs_a_step_on_every_level():
    config = dict(CONFIG, base="fixmatch", threshold=0.4)
    model, history, _ = fit_with_labels("hiermatch", tf.distribute.get_strategy(), config,
                                        num_batches=1)
    assert np.isfinite(history["loss"][0]) and history["supervised_loss"][0] > 0
    assert len(model.heads.dense) == 2
    # Only the base's own scalars are logged (MixMatch's ramped weight is not).
    assert "mask_rate" in history and "unlabeled_weight" not in history


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="base is one of"):
        build("hiermatch", **dict(CONFIG, base="pseudo_label"))
    with pytest.raises(ValueError, match="one share per level"):
        build("hiermatch", **dict(CONFIG, level_fractions=[1.0]))


@pytest.mark.parametrize("base", ["mixmatch", "fixmatch"])
def test_one_and_two_replicas_agree_with_a_labeled_stream(base):
    assert_replicas_agree("hiermatch", dict(CONFIG, base=base, threshold=0.4))

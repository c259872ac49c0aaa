"""MixMatch: guess, sharpen, MixUp and loss against a NumPy copy of the official step; the decay;
a step with a labeled stream; 1 vs 2 replicas."""

import numpy as np
import tensorflow as tf

from keras_ssl.methods import Batch, StepContext
from keras_ssl.methods.mixmatch import mixup_draws
from tests.methods.test_fixmatch import (LABELED, RUN, UNLABELED, assert_replicas_agree, build,
                                         fit_with_labels, one_batch, softmax)

CONFIG = dict(num_classes=3, unlabeled_weight=75.0, rampup_fraction=0.5, weight_decay=0.02,
              ema_decay=0.9)


def test_mixup_draws_are_seeded_max_lambda_weights_and_a_permutation():
    ctx = StepContext.at(3, seed=1)
    weights, permutation = mixup_draws(ctx, 20, 0.75, per_row=True)
    again, _ = mixup_draws(StepContext.at(3, seed=1), 20, 0.75, per_row=True)
    np.testing.assert_array_equal(weights, again)
    assert np.all(weights >= 0.5) and np.all(weights <= 1.0) and np.ptp(weights) > 0
    np.testing.assert_array_equal(np.sort(permutation), np.arange(20))
    batch_weights, _ = mixup_draws(ctx, 20, 0.75, per_row=False)
    assert np.ptp(batch_weights) == 0


def test_step_is_the_official_rule():
    model = build("mixmatch", **CONFIG)
    batch = one_batch()
    ctx = StepContext.at(1, seed=RUN.seed)
    outputs = model.forward(batch, ctx)
    loss, logs = model.loss(outputs, ctx)
    # Label guess (mixmatch.py:40-50), on one training-mode batch of both views.
    unlabeled = tf.concat(batch.views, 0)
    guess_logits = model.logits(unlabeled, True)[0].numpy().astype("float64")
    mean = (softmax(guess_logits[:UNLABELED]) + softmax(guess_logits[UNLABELED:])) / 2
    guess = mean ** 2 / (mean ** 2).sum(1, keepdims=True)
    # "xxy.yxy" MixUp of [x, u1, u2] with [onehot, q, q] (layers.py:166-175, 212-216).
    images = np.concatenate([batch.labeled.views[0].numpy(), unlabeled.numpy()])
    targets = np.concatenate([np.eye(3)[batch.labeled.label.numpy()], guess, guess])
    weights, permutation = (a.numpy() for a in mixup_draws(ctx, len(images), 0.75, True))
    w = weights.astype("float64")
    mixed = w[:, None, None, None] * images + (1 - w[:, None, None, None]) * images[permutation]
    mixed_targets = w[:, None] * targets + (1 - w[:, None]) * targets[permutation]
    np.testing.assert_allclose(outputs.labeled_targets[0], mixed_targets[:LABELED], atol=1e-5)
    np.testing.assert_allclose(outputs.unlabeled_targets[0], mixed_targets[LABELED:], atol=1e-5)
    logits = model.logits(tf.constant(mixed, tf.float32), True)[0].numpy().astype("float64")
    np.testing.assert_allclose(outputs.labeled_logits[0], logits[:LABELED], rtol=1e-4,
                               atol=1e-5)
    # mixmatch.py:57-58, 81-84: Lx + w_match * ramp * Lu, the ramp over half of 4 steps.
    lx = np.mean(-np.sum(mixed_targets[:LABELED] * np.log(softmax(logits[:LABELED])), 1))
    lu = np.mean((softmax(logits[LABELED:]) - mixed_targets[LABELED:]) ** 2)
    ramp = min(1 / (0.5 * RUN.total_steps), 1.0)
    np.testing.assert_allclose(logs["unlabeled_weight"], 75.0 * ramp)
    np.testing.assert_allclose(loss, lx + 75.0 * ramp * lu, rtol=1e-4)


def test_decay_shrinks_the_kernels_only_by_weight_decay_times_lr():
    model = build("mixmatch", **CONFIG)
    outputs = model.forward(one_batch(), StepContext.at(0))
    before = {w.path: w.numpy() for w in model.encoder.weights + model.heads.weights}
    model.shrink_online(outputs.__class__(learning_rate=tf.constant(0.5)), StepContext.at(0))
    for w in model.encoder.weights + model.heads.weights:
        factor = 1 - 0.02 * 0.5 if "kernel" in w.name else 1.0
        np.testing.assert_allclose(w.numpy(), before[w.path] * factor, rtol=1e-6, err_msg=w.path)


def test_a_step_with_a_labeled_stream_updates_everything():
    model, history, _ = fit_with_labels("mixmatch", tf.distribute.get_strategy(), CONFIG,
                                        num_batches=1)
    assert np.isfinite(history["loss"][0]) and history["unlabeled_loss"][0] > 0
    # The EMA copy reads the online BatchNorm statistics (the EMA getter).
    for online, copy in zip(model.encoder.weights, model.ema_encoder.weights):
        if "moving" in online.name:
            np.testing.assert_array_equal(copy, online)


def test_one_and_two_replicas_agree_with_a_labeled_stream():
    assert_replicas_agree("mixmatch", CONFIG)


def test_labeled_rows_without_a_label_are_guessed():
    # A single stream (no labeled batch): its -1 rows get their own guess as target.
    model = build("mixmatch", **CONFIG)
    batch = one_batch()
    labels = np.array([0, -1, 2, 1, -1, -1, 2, 0])
    outputs = model.forward(Batch(views=batch.views, index=batch.index,
                                  label=tf.constant(labels)), StepContext.at(0))
    np.testing.assert_array_equal(outputs.labeled_known[0], labels >= 0)
    loss, _ = model.loss(outputs, StepContext.at(0))
    assert np.isfinite(loss)

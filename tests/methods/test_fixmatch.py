"""FixMatch: its loss against a NumPy copy of the official rule, one batch through BatchNorm,
the EMA evaluation model, a step with a labeled stream, 1 vs 2 replicas.

`labeled_dataset` and `fit_with_labels` are shared by the MixMatch and HierMatch tests.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import methods
from keras_ssl.backbones import tiny_backbone
from keras_ssl.methods import Batch, LabeledBatch, RunContext, StepContext
from tests.methods import harness

UNLABELED, LABELED = 8, 4
RUN = RunContext(num_examples=32, steps_per_epoch=4, epochs=1, seed=0)


def build(name, **config):
    keras.utils.set_random_seed(0)
    encoder = tiny_backbone(image_size=16, width=4, norm="sync_batch")
    return methods.get(name, encoder=encoder, run=RUN, **config)


def labeled_dataset(num_batches=2, num_views=2, seed=0):
    """Elements with `num_views` unlabeled views (labels hidden) and a labeled stream of 4 rows."""
    rng = np.random.default_rng(seed)
    def views(rows):
        return tuple(rng.uniform(size=(num_batches * rows, 16, 16, 3)).astype("float32")
                     for _ in range(num_views))
    unlabeled_index = rng.permutation(32)[:num_batches * UNLABELED].astype("int64")
    labeled_index = rng.permutation(32)[:num_batches * LABELED].astype("int64")
    elements = {"views": views(UNLABELED), "index": unlabeled_index,
                "label": -np.ones(num_batches * UNLABELED, "int64")}
    labeled = {"views": views(LABELED), "index": labeled_index,
               "label": labeled_index % 3}
    unlabeled = tf.data.Dataset.from_tensor_slices(elements).batch(UNLABELED)
    labeled = tf.data.Dataset.from_tensor_slices(labeled).batch(LABELED)
    return tf.data.Dataset.zip((unlabeled, labeled)).map(
        lambda u, x: {**u, "labeled": x})


def one_batch(num_views=2, seed=0):
    element = next(iter(labeled_dataset(1, num_views, seed)))
    return Batch.from_element(element)


def fit_with_labels(name, strategy, config, num_views=2, num_batches=2):
    """Builds under `strategy`, fits on `labeled_dataset`; returns (history, weights by path)."""
    with strategy.scope():
        model = build(name, **config)
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
        model.optimizer.build(model.trainable_variables)
    history = model.fit(labeled_dataset(num_batches, num_views), epochs=1, verbose=0,
                        shuffle=False)
    return model, history.history, harness.weights_by_path(model)


def assert_replicas_agree(name, config, num_views=2):
    _, single, expected = fit_with_labels(name, tf.distribute.get_strategy(), config, num_views)
    _, mirrored, actual = fit_with_labels(name, harness.mirrored_strategy(), config, num_views)
    np.testing.assert_allclose(mirrored["loss"], single["loss"], rtol=1e-4)
    assert expected.keys() == actual.keys()
    for path in expected:
        np.testing.assert_allclose(actual[path], expected[path], rtol=1e-3, atol=5e-5,
                                   err_msg=path)


def softmax(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def cross_entropy(logits, labels):
    return -np.log(softmax(logits)[np.arange(len(labels)), labels])


CONFIG = dict(num_classes=3, threshold=0.4, unlabeled_weight=2.0, weight_decay=5e-3,
              ema_decay=0.9)


def test_loss_is_the_official_rule_on_one_batch_of_all_three_parts():
    model = build("fixmatch", **CONFIG)
    batch = one_batch()
    ctx = StepContext.at(0)
    outputs = model.forward(batch, ctx)
    # A threshold between the weak rows' confidences, so both kinds of row occur.
    model.threshold = float(np.median(softmax(outputs.weak_logits[0].numpy()).max(1)))
    loss, logs = model.loss(outputs, ctx)
    # One batch of [labeled, weak, strong] through BatchNorm (training mode).
    together = model.logits(tf.concat([batch.labeled.views[0], *batch.views], 0), True)[0]
    together = together.numpy().astype("float64")
    np.testing.assert_allclose(outputs.labeled_logits[0], together[:LABELED], rtol=1e-5)
    np.testing.assert_allclose(outputs.strong_logits[0], together[-UNLABELED:], rtol=1e-5)
    alone = model.logits(batch.labeled.views[0], True)[0]
    assert not np.allclose(alone, together[:LABELED], atol=1e-4)
    # ab_fixmatch_ra.py:92-116.
    labeled, weak, strong = np.split(together, [LABELED, LABELED + UNLABELED])
    supervised = cross_entropy(labeled, batch.labeled.label.numpy()).mean()
    probabilities = softmax(weak)
    mask = probabilities.max(1) >= model.threshold
    unlabeled = np.mean(cross_entropy(strong, probabilities.argmax(1)) * mask)
    penalty = sum(0.5 * np.sum(w.numpy().astype("float64") ** 2)
                  for w in model.encoder.trainable_weights + model.heads.trainable_weights
                  if "kernel" in w.name)
    assert 0 < mask.sum() < UNLABELED
    np.testing.assert_allclose(logs["mask_rate"], mask.mean())
    np.testing.assert_allclose(loss, supervised + 2.0 * unlabeled + 5e-3 * penalty, rtol=1e-5)


def test_without_a_labeled_stream_the_known_rows_of_the_main_stream_are_labeled():
    model = build("fixmatch", **CONFIG)
    batch = one_batch()
    labels = np.array([0, -1, 2, 1, -1, -1, 2, 0])
    single = Batch(views=batch.views, index=batch.index, label=tf.constant(labels))
    outputs = model.forward(single, StepContext.at(0))
    _, logs = model.loss(outputs, StepContext.at(0))
    weak = outputs.weak_logits[0].numpy().astype("float64")
    known = labels >= 0
    np.testing.assert_allclose(logs["supervised_loss"],
                               cross_entropy(weak[known], labels[known]).mean(), rtol=1e-5)


def test_a_step_moves_the_ema_and_evaluation_reads_it():
    model, history, after = fit_with_labels("fixmatch", tf.distribute.get_strategy(),
                                            dict(CONFIG, ema_decay=0.5), num_batches=1)
    assert np.isfinite(history["loss"][0])
    initial = build("fixmatch", **dict(CONFIG, ema_decay=0.5))
    for online, copy, start in zip(model.encoder.weights, model.ema_encoder.weights,
                                   initial.encoder.weights):
        if online.trainable:
            # Starts equal to the online model; one EMA step of decay 0.5.
            np.testing.assert_allclose(copy, 0.5 * start + 0.5 * online.numpy(), rtol=1e-5,
                                       atol=1e-7)
        else:
            # BatchNorm statistics are the online model's (the EMA getter).
            np.testing.assert_array_equal(copy, online)
    images = np.random.default_rng(1).uniform(size=(3, 16, 16, 3)).astype("float32")
    expected = model.ema_heads(model.ema_encoder(images, training=False))[0]
    np.testing.assert_allclose(model.classify(images), expected, rtol=1e-6)
    np.testing.assert_allclose(model.classifier_model()(images), expected, rtol=1e-5)
    assert not np.allclose(model.logits(images, False)[0], expected)
    # test_top1: the EMA classifier's accuracy on {"image", "label"} batches.
    labels = np.array([0, 1, 2])
    dataset = tf.data.Dataset.from_tensor_slices({"image": images, "label": labels}).batch(2)
    assert model.test_top1(dataset) == pytest.approx(np.mean(np.argmax(expected, 1) == labels))


def test_views_are_checked():
    model = build("fixmatch", **CONFIG)
    batch = one_batch()
    with pytest.raises(ValueError, match="weak and a strong view"):
        model.forward(Batch(views=batch.views[:1], index=batch.index, label=batch.label,
                            labeled=LabeledBatch(batch.labeled.views, batch.labeled.label)),
                      StepContext.at(0))


def test_one_and_two_replicas_agree_with_a_labeled_stream():
    assert_replicas_agree("fixmatch", CONFIG)

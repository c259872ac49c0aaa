"""NNCSL's step: the loss is the sum of the official terms, the teacher is frozen, tasks switch
without retracing, BatchNorm freezes on request, and 1 vs 2 replicas agree.

The NumPy terms come from tests/losses/test_soft_nearest_neighbour.py, which
transcribes kangzhiq/NNCSL's `losses.py`; here they are fed the embeddings
of the step as the official `train_step` would slice them
(nncsl_train.py:563-638).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.backbones import tiny_backbone
from keras_ssl.methods.contract import Batch, StepContext
from keras_ssl.methods.nncsl import NNCSL
from tests.losses.test_soft_nearest_neighbour import _ref_labels, _ref_paws, _ref_snn
from tests.methods import harness

NUM_CLASSES = 4
TASKS = ((0, 1), (2, 3))


def _build(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    encoder = tiny_backbone(image_size=16, width=4, norm="sync_batch")
    return NNCSL(encoder, num_classes=NUM_CLASSES, projection_hidden_dim=8, projection_dim=8,
                 synchronized_bn=True, run=harness.RUN, name="nncsl", **kwargs)


def _elements(count=8, seed=0, task=1):
    """Unlabelled views of the task's classes (labels hidden) and a labelled batch over seen classes."""
    rng = np.random.default_rng(seed)
    image = lambda size: rng.uniform(size=(count, size, size, 3)).astype("float32")  # noqa: E731
    seen = sum(TASKS[:task + 1], ())
    return {"views": (image(16), image(16), image(8)),
            "index": np.arange(count, dtype="int64"),
            "label": np.full(count, -1, "int64"),
            "labeled": {"views": (image(16), image(16)),
                        "label": np.array([seen[i % len(seen)] for i in range(count)], "int64"),
                        "index": np.arange(count, dtype="int64") + 100}}


def _dataset(num_batches=2, task=1):
    parts = [_elements(seed=s, task=task) for s in range(num_batches)]
    joined = tf.nest.map_structure(lambda *xs: np.concatenate(xs), *parts)
    return tf.data.Dataset.from_tensor_slices(joined).batch(harness.GLOBAL_BATCH,
                                                            drop_remainder=True)


def _batch(element):
    return Batch.from_element(tf.nest.map_structure(tf.constant, element))


def _start(model, task):
    model.start_task(task, current_classes=TASKS[task], past_classes=sum(TASKS[:task], ()))


def _compile(model):
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.optimizer.build(model.trainable_variables)


def _np(x):
    return np.asarray(x, dtype="float64")


def _reference_loss(model, element, paws_classes):
    """The official step's loss, in NumPy, from the model's own layers."""
    lab, lab_label = element["labeled"]["views"], element["labeled"]["label"]
    large = np.concatenate([lab[0], lab[1], *element["views"][:2]])
    small = element["views"][2]
    count = len(lab_label)

    def embed(encoder, projector, training):
        big = encoder(large, training=training)
        return (big, _np(projector(big, training=training)),
                _np(projector(encoder(small, training=training), training=training)))

    big, h, h_small = embed(model.encoder, model.projector, True)
    supports, labels = h[:2 * count], np.concatenate([lab_label, lab_label])
    anchors = np.concatenate([h[2 * count:], h_small])
    targets = np.concatenate([h[3 * count:], h[2 * count:3 * count]])
    past = TASKS[0]
    keep = np.isin(labels, paws_classes)
    matrix = _ref_labels(list(labels[keep]), list(paws_classes), 0.1)
    paws, me_max, _ = _ref_paws(anchors, supports[keep], targets, supports[keep], matrix,
                                multicrop=1)
    logits = _np(model.classifier(big[:2 * count]))  # every class is seen in task 1
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    online = -np.mean(log_probs[np.arange(2 * count), labels])
    _, th, th_small = embed(model.teacher_encoder, model.teacher_projector, False)
    pre_keep = np.isin(labels, past)
    past_matrix = _ref_labels(list(labels[pre_keep]), list(past), 0.1)
    cur = _ref_snn(anchors, supports[pre_keep], past_matrix, 0.1)
    pre = _ref_snn(np.concatenate([th[2 * count:], th_small]), th[:2 * count][pre_keep],
                   past_matrix, 0.1)
    nnd = np.mean(np.sum(-pre * np.log(cur), axis=1))
    return paws + me_max + 0.005 * online + 0.2 * nnd, dict(paws=paws, nnd=nnd, online=online)


@pytest.mark.parametrize("current_task_supports", [True, False])
def test_loss_is_the_sum_of_the_official_terms_in_the_second_task(current_task_supports):
    # mask: true (the released configs) keeps the current task's supports in
    # PAWS; mask: false every seen class's (nncsl_train.py:572-575).
    model = _build(current_task_supports=current_task_supports)
    _start(model, 1)  # teacher = the model as built
    # Move the online model away from its teacher, so NND is not H(p, p).
    rng = np.random.default_rng(5)
    for weight in model.encoder.trainable_weights + model.projector.trainable_weights:
        weight.assign(weight + 0.2 * rng.normal(size=weight.shape).astype("float32"))
    element = _elements(task=1)
    ctx = StepContext.at(0)
    loss, logs = model.loss(model.forward(_batch(element), ctx), ctx)
    paws_classes = TASKS[1] if current_task_supports else TASKS[0] + TASKS[1]
    expected, terms = _reference_loss(model, element, paws_classes)
    np.testing.assert_allclose(loss, expected, rtol=2e-4)
    np.testing.assert_allclose(logs["paws_loss"], terms["paws"], rtol=2e-4)
    np.testing.assert_allclose(logs["online_loss"], terms["online"], rtol=2e-4)
    np.testing.assert_allclose(logs["distillation_loss"], terms["nnd"], rtol=2e-4)
    assert terms["nnd"] > 0


def test_first_task_has_no_distillation_and_masks_unseen_classes():
    model = _build()
    _start(model, 0)
    element = _elements(task=0)
    ctx = StepContext.at(0)
    loss, logs = model.loss(model.forward(_batch(element), ctx), ctx)
    assert np.isfinite(loss)
    assert float(logs["distillation_loss"]) == 0.0
    logits = np.asarray(model.classify(element["views"][0]))
    assert np.all(logits[:, 2:] <= -1e8)
    assert set(np.argmax(logits, axis=1)) <= {0, 1}


def test_a_fit_step_leaves_the_teacher_frozen_and_moves_the_model():
    model = _build()
    _compile(model)
    _start(model, 0)
    model.fit(_dataset(1, task=0), epochs=1, verbose=0)
    _start(model, 1)
    teacher = harness.weights_by_path(model.teacher_encoder)
    teacher.update(harness.weights_by_path(model.teacher_projector))
    online = {w.path: w.numpy().copy() for w in model.encoder.weights}
    # The teacher is the model as it was at the end of task 0.
    for a, b in zip(model.teacher_encoder.get_weights(), model.encoder.get_weights()):
        np.testing.assert_array_equal(a, b)
    tracked = {id(v) for v in model.update_variables()}
    assert not any(id(v) in tracked for v in model.teacher_encoder.weights)
    history = model.fit(_dataset(2, task=1), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and history.history["distillation_loss"][0] > 0
    for path, value in teacher.items():
        actual = {w.path: w.numpy() for w in model.teacher_encoder.weights
                  + model.teacher_projector.weights}[path]
        np.testing.assert_array_equal(actual, value, err_msg=path)
    assert any(not np.array_equal(w.numpy(), online[w.path]) for w in model.encoder.weights)
    assert int(model.task_index.numpy()) == 1


def _moving_statistics(model):
    return {w.path: w.numpy().copy() for w in model.encoder.weights if "moving" in w.path}


def test_frozen_batch_norm_from_the_second_task_is_an_option():
    for frozen in (False, True):
        model = _build(freeze_batch_norm_after_first_task=frozen)
        _compile(model)
        _start(model, 0)
        before = _moving_statistics(model)
        model.fit(_dataset(1, task=0), epochs=1, verbose=0)
        first = _moving_statistics(model)
        # Task 0 always trains BatchNorm on batch statistics.
        assert any(not np.array_equal(before[k], first[k]) for k in before)
        _start(model, 1)
        assert model.batch_norm_frozen is frozen
        model.fit(_dataset(1, task=1), epochs=1, verbose=0)
        second = _moving_statistics(model)
        unchanged = all(np.array_equal(first[k], second[k]) for k in first)
        assert unchanged is frozen


def test_one_and_two_replicas_agree_in_the_second_task():
    results = []
    for strategy in (tf.distribute.get_strategy(), harness.mirrored_strategy()):
        with strategy.scope():
            model = _build()
            _compile(model)
        _start(model, 1)
        history = model.fit(_dataset(2, task=1), epochs=1, verbose=0, shuffle=False)
        results.append((history.history, harness.weights_by_path(model)))
    (one, one_weights), (two, two_weights) = results
    for key in ("loss", "paws_loss", "me_max_loss", "online_loss", "distillation_loss"):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-4, atol=1e-6, err_msg=key)
    assert one_weights.keys() == two_weights.keys()
    # The harness' tolerance: float32 noise of a few 1e-5 after two steps; a
    # wrong reduction (of the gathered supports, ME-max's mean, the online
    # CE's count) moves weights by the step size, ~1e-2 here.
    for path, value in one_weights.items():
        np.testing.assert_allclose(two_weights[path], value, rtol=1e-3, atol=5e-5,
                                   err_msg=path)

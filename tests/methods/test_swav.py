"""SwAV specifics: unit-norm prototypes, the freeze, the queue, the codes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import methods
from keras_ssl.backbones import tiny_backbone
from keras_ssl.methods import Batch, StepContext
from tests.methods import harness

SIZES = (16, 16, 8)


def _swav(**overrides):
    keras.utils.set_random_seed(0)
    config = {"run": harness.RUN, **harness.TINY_CONFIGS["swav"], **overrides}
    model = methods.get("swav", encoder=tiny_backbone(image_size=16, width=4), **config)
    model.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9, weight_decay=1e-3))
    return model


def _step(model, seed=0):
    model.fit(harness.batches(1, seed=seed, sizes=SIZES), epochs=1, verbose=0,
              shuffle=False)


def _prototypes(model):
    return model.prototypes.kernel.numpy().copy()


def test_prototypes_stay_unit_norm_after_steps():
    model = _swav(freeze_prototypes_steps=0)
    np.testing.assert_allclose(np.linalg.norm(_prototypes(model), axis=1), 1.0, rtol=1e-6)
    for seed in range(2):
        before = _prototypes(model)
        _step(model, seed)
        assert np.abs(_prototypes(model) - before).max() > 1e-4
        np.testing.assert_allclose(np.linalg.norm(_prototypes(model), axis=1), 1.0,
                                   rtol=1e-5)


def test_prototypes_frozen_for_the_first_steps_then_trained():
    # Weight decay and momentum act on the frozen rows too (only radially);
    # the renormalisation must undo that exactly enough to leave them put.
    model = _swav(freeze_prototypes_steps=2)
    start = _prototypes(model)
    encoder_start = model.encoder.weights[0].numpy().copy()
    _step(model, 0)
    _step(model, 1)
    np.testing.assert_allclose(_prototypes(model), start, atol=1e-6)
    assert np.abs(model.encoder.weights[0].numpy() - encoder_start).max() > 1e-4
    _step(model, 2)
    assert np.abs(_prototypes(model) - start).max() > 1e-4


def test_queue_is_filled_from_its_start_step_and_used_once_full():
    model = _swav(queue_length=16, queue_start_steps=1)
    in_use = []
    for seed in range(4):
        in_use.append(bool(model.queue_in_use().numpy()))
        _step(model, seed)
    # Step 0 is before the start; steps 1 and 2 fill 8 rows each.
    assert in_use == [False, False, False, True]
    assert int(model.queue_filled.numpy()) == 16
    logs = model.fit(harness.batches(1, seed=9, sizes=SIZES), epochs=1, verbose=0).history
    assert logs["queue_in_use"] == [1.0]


def test_codes_with_the_queue_differ_from_codes_without():
    model = _swav(queue_length=8, queue_start_steps=0)
    _step(model, 0)
    assert bool(model.queue_in_use().numpy())
    scores = tf.constant(np.random.default_rng(0).normal(size=(8, 6)), tf.float32)
    with_queue = model.assign_codes(scores, 0).numpy()
    model.queue_filled.assign(0)
    without_queue = model.assign_codes(scores, 0).numpy()
    np.testing.assert_allclose(with_queue.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(without_queue.sum(axis=1), 1.0, rtol=1e-5)
    assert np.abs(with_queue - without_queue).max() > 1e-3


def test_queue_holds_the_gathered_embeddings_of_each_global_crop():
    model = _swav(queue_length=8, queue_start_steps=0)
    _step(model, 0)
    for queue in model.queues:
        keys = queue.keys.numpy()
        np.testing.assert_allclose(np.linalg.norm(keys, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(model.queues[0].keys.numpy(), model.queues[1].keys.numpy())


def test_too_few_crops_raise():
    model = _swav()
    batch = Batch(views=(tf.zeros((2, 16, 16, 3)),), index=tf.range(2, dtype=tf.int64),
                  label=tf.fill([2], tf.constant(-1, tf.int64)))
    with pytest.raises(ValueError, match="at least 2 crops"):
        model.forward(batch, StepContext.at(0, training=False))


def test_outputs_name_scores_assignments_and_embeddings():
    model = _swav()
    batch = Batch.from_element(next(iter(harness.batches(1, sizes=SIZES))))
    outputs = model.forward(batch, model.step_context())
    assert len(outputs.scores) == len(outputs.embeddings) == len(SIZES)
    assert len(outputs.assignments) == model.num_assign_views
    for scores, codes in zip(outputs.scores, outputs.assignments):
        assert scores.shape == codes.shape == (8, 6)
        np.testing.assert_allclose(codes.numpy().sum(axis=1), 1.0, rtol=1e-5)
    for embeddings in outputs.embeddings:
        np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    loss, logs = model.loss(outputs, model.step_context())
    assert np.isfinite(loss.numpy()) and set(logs) == {"queue_in_use"}

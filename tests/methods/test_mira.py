"""MIRA specifics: pseudo-labels, the shared head, the frozen head, beta's schedule."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import methods
from keras_ssl.backbones import tiny_backbone
from keras_ssl.methods import Batch
from tests.methods import harness

SIZES = (16, 16, 8)


def _mira(**overrides):
    keras.utils.set_random_seed(0)
    config = {"run": harness.RUN, **harness.TINY_CONFIGS["mira"], **overrides}
    model = methods.get("mira", encoder=tiny_backbone(image_size=16, width=4), **config)
    model.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
    # Built before fit: an optimizer that makes its variables in fit's trace
    # makes tf.function trace the step twice.
    model.optimizer.build(model.update_variables())
    return model


@pytest.fixture(scope="module")
def trained():
    """(model, fit history) after two multi-crop steps, the head trained from step 0.

    Tracing a fit costs more than anything these tests do with its result,
    so the tests that need a trained model share this one; none trains it
    further, and what their forward passes change (BatchNorm statistics)
    none of them checks.
    """
    model = _mira(freeze_prototypes_steps=0, total_steps=10)
    history = model.fit(harness.batches(2, sizes=SIZES), epochs=1, verbose=0)
    return model, history.history


def _views(seed=0):
    rng = np.random.default_rng(seed)
    return tuple(tf.constant(rng.uniform(size=(8, s, s, 3)), tf.float32) for s in SIZES)


def _batch(seed=0):
    return Batch(views=_views(seed), index=tf.range(8, dtype=tf.int64),
                 label=tf.fill([8], tf.constant(-1, tf.int64)))


def _directions(model):
    kernel = model.prototypes.kernel.numpy()
    return kernel / np.linalg.norm(kernel, axis=1, keepdims=True)


def test_pseudo_labels_are_distributions_for_every_global_crop():
    model = _mira()
    outputs = model.forward(_batch(), model.step_context())
    assert len(outputs.assignments) == 2 and len(outputs.scores) == len(SIZES)
    assert len(outputs.embeddings) == len(SIZES)
    for labels in outputs.assignments:
        labels = labels.numpy()
        assert labels.shape == (8, 6)
        assert (labels >= 0).all()
        np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-5)


def test_pseudo_labels_are_more_balanced_than_the_teacher_softmax():
    # MIRA's regulariser spreads the batch over prototypes: the marginal of
    # the labels has more entropy than the sharpened teacher softmax.
    model = _mira(beta_initial=0.7, beta_final=0.7)
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(32, 6)).astype("float32")
    logits[:, 0] += 2.0  # one prototype dominates
    labels = model.pseudo_labels(tf.constant(logits), tf.constant(0.7)).numpy()
    sharpened = tf.nn.softmax(logits / 0.225 / 0.3).numpy()

    def marginal_entropy(p):
        m = p.mean(axis=0)
        return -(m * np.log(m)).sum()

    assert marginal_entropy(labels) > marginal_entropy(sharpened) + 0.1


def test_beta_follows_the_cosine_schedule():
    model = _mira(total_steps=10)
    np.testing.assert_allclose(model.beta_at(0), 0.75, rtol=1e-6)
    np.testing.assert_allclose(model.beta_at(5), (0.75 + 2 / 3) / 2, rtol=1e-6)
    np.testing.assert_allclose(model.beta_at(10), 2 / 3, rtol=1e-6)
    # No length from the argument or the run: beta stays at its start.
    np.testing.assert_allclose(_mira(total_steps=None, run=None).beta_at(7), 0.75, rtol=1e-6)


def test_head_frozen_for_the_first_steps_then_trained():
    model = _mira(freeze_prototypes_steps=1)
    start = _directions(model)
    model.fit(harness.batches(1, sizes=SIZES), epochs=1, verbose=0)
    np.testing.assert_allclose(_directions(model), start, atol=1e-6)
    model.fit(harness.batches(1, seed=1, sizes=SIZES), epochs=1, verbose=0)
    assert np.abs(_directions(model) - start).max() > 1e-4


def test_forward_leaves_the_teacher_alone_and_after_apply_moves_it():
    model = _mira(freeze_prototypes_steps=0, total_steps=10)
    # The student moved away from the teacher (by hand: a traced training
    # step would cost ten times this test), so an EMA update shows.
    rng = np.random.default_rng(4)
    for weight in model.encoder.trainable_weights:
        weight.assign(weight + 0.1 * rng.standard_normal(weight.shape).astype("float32"))
    teacher = [w.numpy().copy() for w in model.target_encoder.trainable_weights]
    assert any(np.abs(before - online.numpy()).max() > 0.01 for before, online in
               zip(teacher, model.encoder.trainable_weights))
    ctx = model.step_context()
    outputs = model.forward(_batch(), ctx)
    for before, after in zip(teacher, model.target_encoder.trainable_weights):
        np.testing.assert_array_equal(after.numpy(), before)
    # After the step the teacher leads: it moves with tau of the next step.
    model.after_apply(outputs, ctx)
    tau = float(model.momentum_at(ctx.step + 1))
    for before, target, online in zip(teacher, model.target_encoder.trainable_weights,
                                      model.encoder.trainable_weights):
        np.testing.assert_allclose(target.numpy(),
                                   before + (1 - tau) * (online.numpy() - before),
                                   rtol=1e-5, atol=1e-6)


def test_teacher_is_an_ema_of_the_student_and_shares_its_head(trained):
    model, _ = trained
    head = [w.path for w in model.prototypes.weights]
    assert not any("target" in path for path in head)
    # Two steps in, the teacher trails the student.
    assert int(model.optimizer.iterations.numpy()) == 2
    online = model.encoder.weights[0].numpy()
    target = model.target_encoder.weights[0].numpy()
    assert not np.allclose(online, target)
    # The teacher's logits use the student's current prototypes.
    views = _views(2)
    _, teacher_logits = model._logits(model.target_encoder, model.target_projector,
                                      views[0], training=False)
    z = tf.math.l2_normalize(model.target_projector(
        model.target_encoder(views[0], training=False), training=False), axis=1)
    np.testing.assert_allclose(teacher_logits, z.numpy() @ _directions(model).T,
                               rtol=1e-4, atol=1e-5)


def test_loss_is_finite_with_two_crops_only():
    model = _mira()
    logs = model.fit(harness.batches(1), epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"][0])


def test_assignment_statistics_match_numpy_and_their_limits():
    from keras_ssl.methods.mira import assignment_statistics
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(5), size=7).astype("float32")
    entropy, information = (float(v) for v in assignment_statistics(p))
    rows = -(p * np.log(p)).sum(axis=1).mean()
    marginal = p.mean(axis=0)
    np.testing.assert_allclose(entropy, rows, rtol=1e-5)
    np.testing.assert_allclose(information, -(marginal * np.log(marginal)).sum() - rows,
                               rtol=1e-4)
    # Identical rows carry no information; one-hot rows spread over all K, ln K.
    same = assignment_statistics(np.repeat(p[:1], 7, axis=0))
    np.testing.assert_allclose(float(same[1]), 0.0, atol=1e-5)
    one_hot = np.eye(5, dtype="float32")
    np.testing.assert_allclose([float(v) for v in assignment_statistics(one_hot)],
                               [0.0, np.log(5)], atol=1e-5)


def test_fit_logs_the_targets_entropy_and_mutual_information(trained):
    model, history = trained
    ctx = model.step_context()
    outputs = model.forward(_batch(), ctx)
    _, logs = model.loss(outputs, ctx)
    # Step 2 of 10: beta has left its initial value.
    assert int(ctx.step) == 2 and not np.isclose(model.beta_at(2), model.beta_at(0))
    np.testing.assert_allclose(logs["beta"], model.beta_at(2), rtol=1e-6)
    # NumPy: statistics of each teacher crop's targets, averaged over the two.
    entropies, informations = [], []
    for targets in outputs.assignments:
        t = targets.numpy().astype(np.float64)
        rows = -(t * np.log(t)).sum(axis=1).mean()
        m = t.mean(axis=0)
        entropies.append(rows)
        informations.append(-(m * np.log(m)).sum() - rows)
    np.testing.assert_allclose(logs["target_entropy"], np.mean(entropies), rtol=1e-4)
    np.testing.assert_allclose(logs["target_mutual_information"], np.mean(informations),
                               rtol=1e-3, atol=1e-6)
    # The logs of the fixture's fit (two multi-crop steps).
    assert 0.0 < history["target_entropy"][0] <= np.log(6) + 1e-5
    assert 0.0 <= history["target_mutual_information"][0] <= np.log(6)

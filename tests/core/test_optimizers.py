"""LARS, SGD and the schedules against hand-computed values and NumPy copies of the rules."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.optimizers import LARS, SGD, FixMatchCosine, WarmupCosine
from keras_ssl.training.build import make_optimizer


def test_warmup_cosine_values():
    schedule = WarmupCosine(1.0, total_steps=110, warmup_steps=10,
                            warmup_start_learning_rate=0.1, final_learning_rate=0.0)
    np.testing.assert_allclose(schedule(0), 0.1, atol=1e-6)
    np.testing.assert_allclose(schedule(5), 0.55, atol=1e-6)
    np.testing.assert_allclose(schedule(10), 1.0, atol=1e-6)
    np.testing.assert_allclose(schedule(60), 0.5, atol=1e-6)
    np.testing.assert_allclose(schedule(110), 0.0, atol=1e-6)
    np.testing.assert_allclose(schedule(500), 0.0, atol=1e-6)


def test_lars_step_matches_numpy():
    w0 = np.array([[1.0, -2.0], [0.5, 3.0]], "float32")
    b0 = np.array([0.3, -0.1], "float32")
    gw = np.array([[0.1, 0.2], [-0.3, 0.4]], "float32")
    gb = np.array([0.5, 0.5], "float32")
    w, b = tf.Variable(w0), tf.Variable(b0)
    optimizer = LARS(learning_rate=0.5, momentum=0.9, weight_decay=0.01,
                     trust_coefficient=0.001)
    for _ in range(2):
        optimizer.apply_gradients([(tf.constant(gw), w), (tf.constant(gb), b)])
    # NumPy reference, two steps.
    ref_w, ref_b, mw, mb = w0.copy(), b0.copy(), 0.0, 0.0
    for _ in range(2):
        g = gw + 0.01 * ref_w
        g = g * 0.001 * np.linalg.norm(ref_w) / np.linalg.norm(g)
        mw = 0.9 * mw + g
        ref_w = ref_w - 0.5 * mw
        mb = 0.9 * mb + gb  # 1-D: no decay, no trust ratio
        ref_b = ref_b - 0.5 * mb
    np.testing.assert_allclose(w.numpy(), ref_w, rtol=1e-5)
    np.testing.assert_allclose(b.numpy(), ref_b, rtol=1e-5)


def test_fixmatch_cosine_is_the_official_decay():
    # fixmatch.py: lr *= cos(clip(k / K, 0, 1) * 7 pi / (2 * 8)).
    schedule = FixMatchCosine(0.03, total_steps=1000)
    for step in (0, 1, 250, 999, 1000, 5000):
        expected = 0.03 * np.cos(min(step / 1000, 1.0) * 7 * np.pi / 16)
        np.testing.assert_allclose(schedule(step), expected, rtol=1e-5)
    assert float(schedule(1000)) == pytest.approx(0.03 * 0.19509, rel=1e-4)  # not 0


def test_nesterov_sgd_matches_tensorflow_1s_momentum_optimizer():
    # tf.train.MomentumOptimizer(lr, 0.9, use_nesterov=True), which FixMatch's
    # official code trains with: a <- mu a + g; w <- w - lr (g + mu a). The
    # gradient includes the L2 term, as FixMatch adds it to the loss.
    w0 = np.array([1.0, -2.0, 0.5], "float32")
    gradients = [np.array([0.1, 0.2, -0.3], "float32"), np.array([-0.4, 0.1, 0.2], "float32"),
                 np.array([0.3, 0.3, 0.3], "float32")]
    lr, mu, decay = 0.1, 0.9, 0.01
    variable = tf.Variable(w0)
    optimizer = SGD(lr, momentum=mu, weight_decay=decay, nesterov=True)
    w, accumulator = w0.astype("float64"), np.zeros(3)
    for gradient in gradients:
        optimizer.apply_gradients([(tf.constant(gradient), variable)])
        g = gradient + decay * w
        accumulator = mu * accumulator + g
        w = w - lr * (g + mu * accumulator)
    np.testing.assert_allclose(variable.numpy(), w, rtol=1e-5)
    # Heavy-ball momentum takes another path.
    plain = tf.Variable(w0)
    heavy_ball = SGD(lr, momentum=mu, weight_decay=decay)
    for gradient in gradients:
        heavy_ball.apply_gradients([(tf.constant(gradient), plain)])
    assert not np.allclose(plain.numpy(), w, rtol=1e-5)


def test_make_optimizer_builds_the_schedule_asked_for_and_refuses_mismatches():
    optimizer = make_optimizer("sgd", learning_rate=0.03, weight_decay=0.0, total_steps=100,
                               warmup_steps=0, lr_schedule="fixmatch_cosine", nesterov=True)
    assert optimizer.nesterov
    np.testing.assert_allclose(optimizer.learning_rate, 0.03, rtol=1e-6)  # step 0
    with pytest.raises(ValueError, match="--nesterov"):
        make_optimizer("lars", learning_rate=1.0, weight_decay=0.0, total_steps=100,
                       warmup_steps=0, nesterov=True)
    with pytest.raises(ValueError, match="--warmup_epochs=0"):
        make_optimizer("sgd", learning_rate=0.03, weight_decay=0.0, total_steps=100,
                       warmup_steps=10, lr_schedule="fixmatch_cosine")
    with pytest.raises(ValueError, match="step_decay"):
        make_optimizer("sgd", learning_rate=0.03, weight_decay=0.0, total_steps=100,
                       warmup_steps=0, lr_schedule="step_decay")

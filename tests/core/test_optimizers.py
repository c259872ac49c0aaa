"""LARS and the warm-up + cosine schedule against hand-computed values."""

import numpy as np
import tensorflow as tf

from keras_ssl.optimizers import LARS, WarmupCosine


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

"""Queue and memory bank semantics (FIFO, wrap-around, momentum update)."""

import numpy as np
import tensorflow as tf

from keras_ssl.layers import IndexedMemoryBank, Queue


def test_queue_is_fifo_and_wraps():
    queue = Queue(size=5, dim=2)
    initial = queue.keys.numpy().copy()
    np.testing.assert_allclose(np.linalg.norm(initial, axis=1), 1.0, rtol=1e-5)
    first = np.arange(6, dtype="float32").reshape(3, 2)
    queue.enqueue(tf.constant(first))
    np.testing.assert_array_equal(queue.keys.numpy()[:3], first)
    np.testing.assert_array_equal(queue.keys.numpy()[3:], initial[3:])
    second = -np.arange(1, 7, dtype="float32").reshape(3, 2)
    queue.enqueue(tf.constant(second))  # rows 3, 4, then wraps to 0
    keys = queue.keys.numpy()
    np.testing.assert_array_equal(keys[3:5], second[:2])
    np.testing.assert_array_equal(keys[0], second[2])
    np.testing.assert_array_equal(keys[1:3], first[1:3])
    assert int(queue.pointer.numpy()) == 1


def test_memory_bank_momentum_update_only_touches_given_rows():
    bank = IndexedMemoryBank(size=6, dim=3, momentum=0.5)
    before = bank.rows.numpy().copy()
    features = np.array([[1.0, 0, 0], [0, 1.0, 0]], "float32")
    bank.update(tf.constant([4, 1]), tf.constant(features))
    after = bank.rows.numpy()
    for row, feature in zip([4, 1], features):
        expected = 0.5 * before[row] + 0.5 * feature
        np.testing.assert_allclose(after[row], expected / np.linalg.norm(expected), rtol=1e-5)
    untouched = [0, 2, 3, 5]
    np.testing.assert_array_equal(after[untouched], before[untouched])

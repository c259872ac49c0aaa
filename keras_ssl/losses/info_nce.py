"""InfoNCE with a queue of negatives (MoCo; He et al., 2020)."""

import tensorflow as tf


def info_nce_loss(queries, keys, queue, *, temperature):
    """Mean InfoNCE of queries against their key and the queued negatives.

    Args:
        queries: `[B, D]` online projections (normalised here).
        keys: `[B, D]` momentum-encoder projections, the positives (no gradient).
        queue: `[K, D]` normalised negatives from earlier steps.
        temperature: 0.2 in MoCo v2, 0.07 in MoCo v1, 0.1 in lightly's CIFAR run.

    Returns:
        Scalar float32 loss; the positive is logit 0 of each row.
    """
    queries = tf.math.l2_normalize(tf.cast(queries, tf.float32), axis=1)
    keys = tf.stop_gradient(tf.math.l2_normalize(tf.cast(keys, tf.float32), axis=1))
    queue = tf.stop_gradient(tf.cast(queue, tf.float32))
    positives = tf.reduce_sum(queries * keys, axis=1, keepdims=True)
    negatives = tf.matmul(queries, queue, transpose_b=True)
    logits = tf.concat([positives, negatives], axis=1) / temperature
    labels = tf.zeros(tf.shape(queries)[0], tf.int32)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))

"""InfoNCE with a queue of negatives (MoCo; He et al., 2020)."""

import tensorflow as tf


def info_nce_loss(queries, keys, queue, *, temperature, extra_negatives=None,
                  extra_negative_used=None):
    """Mean InfoNCE of queries against their key and the queued negatives.

    Args:
        queries: `[B, D]` online projections (normalised here).
        keys: `[B, D]` momentum-encoder projections, the positives (no gradient).
        queue: `[K, D]` normalised negatives from earlier steps.
        temperature: 0.2 in MoCo v2, 0.07 in MoCo v1, 0.1 in lightly's CIFAR run.
        extra_negatives: optional `[B, D]`: one more negative per row, seen by
            that row only (background augmentation's BG_Swaps: another
            foreground on the anchor's background); normalised here, no gradient.
        extra_negative_used: optional bool `[B]`: rows whose extra negative
            counts; the others' extra logit is dropped from the softmax.

    Returns:
        Scalar float32 loss; the positive is logit 0 of each row.
    """
    queries = tf.math.l2_normalize(tf.cast(queries, tf.float32), axis=1)
    keys = tf.stop_gradient(tf.math.l2_normalize(tf.cast(keys, tf.float32), axis=1))
    queue = tf.stop_gradient(tf.cast(queue, tf.float32))
    positives = tf.reduce_sum(queries * keys, axis=1, keepdims=True)
    negatives = tf.matmul(queries, queue, transpose_b=True)
    logits = tf.concat([positives, negatives], axis=1) / temperature
    if extra_negatives is not None:
        extra = tf.stop_gradient(tf.math.l2_normalize(tf.cast(extra_negatives, tf.float32), axis=1))
        extra_logits = tf.reduce_sum(queries * extra, axis=1, keepdims=True) / temperature
        if extra_negative_used is not None:
            # A finite stand-in for -inf: exp underflows to exactly 0, and its
            # gradient is 0, with no inf - inf in the softmax.
            extra_logits = tf.where(extra_negative_used[:, None], extra_logits, -1e9)
        logits = tf.concat([logits, extra_logits], axis=1)
    labels = tf.zeros(tf.shape(queries)[0], tf.int32)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))

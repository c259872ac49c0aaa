"""BYOL's normalised regression loss (Grill et al., 2020)."""

import tensorflow as tf


def normalized_regression_loss(predictions, targets):
    """Mean over the batch of ||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z).

    Args:
        predictions: `[B, D]` online predictions.
        targets: `[B, D]` target projections; no gradient flows into them.
    """
    predictions = tf.math.l2_normalize(tf.cast(predictions, tf.float32), axis=1,
                                       epsilon=1e-12)
    # The target network is updated by EMA only: stop the gradient here so
    # the loss can never push it, whatever variables a caller differentiates.
    targets = tf.stop_gradient(tf.math.l2_normalize(
        tf.cast(targets, tf.float32), axis=1, epsilon=1e-12))
    return tf.reduce_mean(2.0 - 2.0 * tf.reduce_sum(predictions * targets, axis=1))

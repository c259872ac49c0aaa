"""Mean shift regression (MSF, Koohpayegani et al., ICCV 2021; CMSF, Navaneet et al., ECCV 2022)."""

import tensorflow as tf


def mean_shift_loss(predictions, bank, neighbor_indices, neighbor_weights=None):
    """Mean over the batch of the mean of 2 - 2 cos(p_i, u) over neighbours u of row i.

    MSF regresses each online prediction to the k memory-bank entries nearest
    to the target of the same image (found by the caller, e.g. with
    `keras_ssl.ops.topk_neighbors`); with k = 1 and the target itself as its
    only neighbour this is BYOL's `normalized_regression_loss`.

    Args:
        predictions: `[B, D]` online predictions (normalised here).
        bank: `[M, D]` memory bank, the current targets included; normalised
            here, and no gradient flows into it.
        neighbor_indices: `[B, k]` integer rows of `bank`, the neighbours of
            each prediction's target.
        neighbor_weights: optional `[B, k]` non-negative weights, e.g. 0 for a
            slot the search had to fill with a disallowed row. Each row's
            neighbours are averaged with these weights (every row needs a
            positive total). Default: the plain mean over k.

    Returns:
        A float32 scalar in [0, 4].
    """
    predictions = tf.math.l2_normalize(tf.cast(predictions, tf.float32), axis=1,
                                       epsilon=1e-12)
    # The bank holds EMA-target embeddings: stop the gradient here so the loss
    # can never move them, whatever variables a caller differentiates.
    bank = tf.stop_gradient(tf.math.l2_normalize(tf.cast(bank, tf.float32), axis=1,
                                                 epsilon=1e-12))
    neighbors = tf.gather(bank, neighbor_indices)  # [B, k, D]
    distances = 2.0 - 2.0 * tf.einsum("bd,bkd->bk", predictions, neighbors)
    if neighbor_weights is None:
        per_row = tf.reduce_mean(distances, axis=1)
    else:
        weights = tf.cast(neighbor_weights, tf.float32)
        per_row = (tf.reduce_sum(weights * distances, axis=1)
                   / tf.reduce_sum(weights, axis=1))
    return tf.reduce_mean(per_row)

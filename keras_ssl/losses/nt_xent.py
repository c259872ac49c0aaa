"""NT-Xent, SimCLR's normalised-temperature cross entropy (Chen et al., 2020)."""

import tensorflow as tf

_LARGE_NUM = 1e9


def nt_xent_loss(projections_a, projections_b, global_a, global_b, offset, *,
                 temperature):
    """Mean NT-Xent over this replica's pairs, negatives from the global batch.

    Each local anchor `a_i` (global row `offset + i`) has its positive `b_i` and
    2G - 2 negatives: every other row of the all-gathered `global_a` and
    `global_b`. The loss is symmetric: (l(a->b) + l(b->a)) / 2, which is the
    mean over the 2N anchors as in lightly and solo-learn.

    Args:
        projections_a, projections_b: local projections `[B, D]` of the views.
        global_a, global_b: the same from every replica `[G, D]` (with
            gradients; see `distribute.all_gather`).
        offset: global row of local row 0.
        temperature: softmax temperature (0.5 on CIFAR, 0.1 with LARS on ImageNet).

    Returns:
        Scalar float32 loss.
    """
    a = tf.math.l2_normalize(tf.cast(projections_a, tf.float32), axis=1)
    b = tf.math.l2_normalize(tf.cast(projections_b, tf.float32), axis=1)
    global_a = tf.math.l2_normalize(tf.cast(global_a, tf.float32), axis=1)
    global_b = tf.math.l2_normalize(tf.cast(global_b, tf.float32), axis=1)
    local_batch = tf.shape(a)[0]
    global_batch = tf.shape(global_a)[0]
    labels = tf.range(local_batch) + offset
    # Each anchor must not be its own negative: mask its self-similarity.
    self_mask = tf.one_hot(labels, global_batch) * _LARGE_NUM

    def one_direction(anchors, same_view, other_view):
        positives_and_cross = tf.matmul(anchors, other_view, transpose_b=True)
        within = tf.matmul(anchors, same_view, transpose_b=True) - self_mask
        logits = tf.concat([positives_and_cross, within], axis=1) / temperature
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)

    losses = one_direction(a, global_a, global_b) + one_direction(b, global_b, global_a)
    return tf.reduce_mean(losses) / 2.0

"""NPID's non-parametric instance softmax (Wu et al., 2018)."""

import tensorflow as tf


def non_parametric_softmax_loss(features, bank, indices, *, temperature):
    """Cross entropy of classifying each example as its own instance.

    p(i | v) = exp(m_i . v / t) / sum_j exp(m_j . v / t) over every row of
    the memory bank: the full softmax NPID uses on CIFAR (`--nce-k 0`) and CLD
    builds on. The bank is a constant here; it is updated after the step.

    Args:
        features: `[B, D]` projections of the current view (normalised here).
        bank: `[N, D]` memory bank rows (one per training example).
        indices: `[B]` dataset indices of the examples.
        temperature: 0.1 on CIFAR, 0.07 on ImageNet.
    """
    features = tf.math.l2_normalize(tf.cast(features, tf.float32), axis=1)
    logits = tf.matmul(features, tf.stop_gradient(bank), transpose_b=True) / temperature
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        tf.cast(indices, tf.int32), logits))

"""InterCLR's inter-image InfoNCE with a cosine margin on the positive.

Xie, Zhan, Liu, Ong, Loy, "Delving into Inter-Image Invariance for
Unsupervised Visual Representations", IJCV 2022 (arXiv 2008.11702); official
code on mmselfsup's `0.x` branch, `models/algorithms/interclr_moco.py`
(`contrast_inter` with `inter_cos_marign_loss=True`).

For a query q (online projection), a positive memory-bank feature m_p drawn
from q's pseudo-cluster and negatives m_n drawn from other clusters:

    L = -log exp((cos(q, m_p) - margin) / t)
             / (exp((cos(q, m_p) - margin) / t) + sum_n exp(cos(q, m_n) / t))

The official margin is -0.5: the positive logit is *raised* by 0.5, a "less
stringent" decision boundary, because a same-cluster bank feature is a weaker
positive than a second view of the same image.
"""

import tensorflow as tf

# Logit of a negative slot that holds no valid negative; exp() of it is 0.
_MASKED_LOGIT = -1e9


def inter_image_nce_loss(queries, positives, negatives, *, temperature, margin,
                         negative_mask=None):
    """Mean inter-image InfoNCE with a cosine margin on the positive logit.

    Args:
        queries: `[B, D]` online projections (normalised here; gradients flow).
        positives: `[B, D]` unit-norm memory-bank features of a same-cluster
            example (no gradient).
        negatives: `[B, M, D]` unit-norm memory-bank features from other
            clusters (no gradient).
        temperature: t (0.2, shared with the intra-image head in the official
            code).
        margin: subtracted from the positive cosine before the temperature
            (official `inter_cos_margin`: -0.5, which adds 0.5).
        negative_mask: optional boolean `[B, M]`; False marks a slot with no
            valid negative (fewer than M candidates were allowed), left out of
            the denominator.

    Returns:
        Scalar float32 loss; the positive is logit 0 of each row.
    """
    queries = tf.math.l2_normalize(tf.cast(queries, tf.float32), axis=1)
    positives = tf.stop_gradient(tf.cast(positives, tf.float32))
    negatives = tf.stop_gradient(tf.cast(negatives, tf.float32))
    positive_logits = (tf.reduce_sum(queries * positives, axis=1, keepdims=True)
                       - margin) / temperature
    negative_logits = tf.einsum("bd,bmd->bm", queries, negatives) / temperature
    if negative_mask is not None:
        negative_logits = tf.where(negative_mask, negative_logits, _MASKED_LOGIT)
    logits = tf.concat([positive_logits, negative_logits], axis=1)
    labels = tf.zeros(tf.shape(queries)[0], tf.int32)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))

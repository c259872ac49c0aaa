"""InfoNCE of a mixed image whose two positives share it by the mixing ratio (CLIM, CutMix)."""

import tensorflow as tf


def image_mixture_nce_loss(queries, keys, partner_keys, mix_ratio, negatives, *, temperature):
    """Mean over rows of lambda * l(q, k) + (1 - lambda) * l(q, k'), each l an InfoNCE.

    The query of a mixed image (a share lambda of its pixels from the anchor,
    the rest from a partner image) is classified twice against the same
    negatives: once with the anchor's key as the positive, once with the
    partner's; the two cross-entropies are weighted by the pixel shares, as
    CutMix weights its two labels (clovaai/CutMix-PyTorch `train.py`:
    `criterion(output, target_a) * lam + criterion(output, target_b) * (1. - lam)`).
    CLIM (Li, Zhang, Xiong, BMVC 2021) splits its mixed image's loss this way
    between the anchor and the selected neighbour (a reconstruction: see
    `keras_ssl.methods.clim`).

    Args:
        queries: [B, D] online embeddings of the mixed images (normalised here).
        keys: [B, D] positives of the anchors (normalised here, no gradient).
        partner_keys: [B, D] positives of the partners (normalised here, no gradient).
        mix_ratio: [B] lambda, the share of each mixed image from its anchor.
        negatives: [M, D] unit-norm negatives shared by both terms (MoCo's
            queue; no gradient).
        temperature: softmax temperature.

    Returns:
        Scalar float32 loss.
    """
    queries = tf.math.l2_normalize(tf.cast(queries, tf.float32), axis=1)

    def positive_logits(positives):
        positives = tf.stop_gradient(tf.math.l2_normalize(tf.cast(positives, tf.float32), axis=1))
        return tf.reduce_sum(queries * positives, axis=1, keepdims=True) / temperature

    negatives = tf.stop_gradient(tf.cast(negatives, tf.float32))
    # The negative logits are the same in both terms: one matmul.
    negative_logits = tf.matmul(queries, negatives, transpose_b=True) / temperature

    def cross_entropy(positive):
        # -log softmax of column 0 of [positive, negatives].
        logits = tf.concat([positive, negative_logits], axis=1)
        return tf.reduce_logsumexp(logits, axis=1) - positive[:, 0]

    mix_ratio = tf.cast(mix_ratio, tf.float32)
    per_row = (mix_ratio * cross_entropy(positive_logits(keys))
               + (1.0 - mix_ratio) * cross_entropy(positive_logits(partner_keys)))
    return tf.reduce_mean(per_row)

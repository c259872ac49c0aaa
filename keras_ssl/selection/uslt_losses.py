"""The two losses that train USL-T's cluster heads.

USL-T (Wang et al., ECCV 2022, §3.3) learns the budget's clusters instead of
running k-means: K-way heads are trained so that every cluster is confident,
neighbours agree, and no cluster swallows the data. Official code
(TonyLianLong/UnsupervisedSelectiveLabeling, commit ceaab3c):
`shared/utils/uslt_utils.py:17-125` (`OursLossLocal`, `OursLossGlobal`),
called per head by `usl-t_pretraining/usl-t-cifar-pretrain.py:185-236`.

Local loss (neighbour consistency with a balancing prior), per head:

    target = sharpen_T(softmax(neighbour_logits - a * log prior))   no gradient
    loss   = KL(target || softmax(anchor_logits))                   batch mean
    prior  = normalise(m * prior + (1 - m) * mean softmax(neighbour_logits))

The adjustment a = 5 divides out the head's running class marginal, so a
neighbour's vote for an over-full cluster counts less; T = 0.25 sharpens;
m = 0.5 (`OursLossLocal(momentum=0.5)` in the pretraining script). The loss
uses the prior from before this batch's update. Officially the anchor is the
strong view of the image and the neighbour a strong view of one of its 20
nearest neighbours (or itself), computed without gradient; the script scales
the local loss by 5 (`LOCAL_LOSS_SCALE`).

Global loss (confident self-labelling, FixMatch-like, class-balanced), per head:

    p = softmax(weak_logits), target = argmax p, kept where max p > 0.95
    loss = sum_kept w[target] * CE(strong_logits, target) / sum_kept w[target]
    w[c] = n_kept / count of kept targets equal to c

which is the mean over the clusters present of each cluster's mean
cross-entropy: a rare cluster counts as much as a common one (`REWEIGHT`
True, `REWEIGHT_RENORM` and `MEAN_OUTSIDE_MASK` False: the defaults of
`usl-t_pretraining/config.py`). No confident row: the loss is 0.

Both are pure functions of tensors with fixed shapes (the official
`masked_select` becomes a 0/1 mask), so they run inside a compiled step.
"""

import tensorflow as tf

from keras_ssl.losses.semi_supervised import sharpen

# usl-t_pretraining/config.py and configs/cifar10_usl-t_pretrain.yaml.
USLT_ADJUSTMENT_WEIGHT = 5.0
USLT_SHARPEN_TEMPERATURE = 0.25
USLT_PRIOR_MOMENTUM = 0.5
USLT_CONFIDENCE_THRESHOLD = 0.95
USLT_LOCAL_LOSS_SCALE = 5.0


def uslt_local_loss(anchor_logits, neighbor_logits, prior, *,
                    adjustment_weight=USLT_ADJUSTMENT_WEIGHT,
                    temperature=USLT_SHARPEN_TEMPERATURE, momentum=USLT_PRIOR_MOMENTUM):
    """USL-T's neighbour-consistency loss of one head, and its updated prior.

    Args:
        anchor_logits: [B, K] logits of the anchors (gradients flow here).
        neighbor_logits: [B, K] logits of one neighbour of each anchor
            (treated as constants).
        prior: [K] the head's running class marginal (starts at 1 / K).
        adjustment_weight: a, how strongly the prior is divided out (5).
        temperature: T of the sharpening (0.25).
        momentum: m of the prior's moving average (0.5).

    Returns:
        (loss scalar float32, new prior [K] float32).

    Example:
    >>> loss, prior = uslt_local_loss(anchors, neighbours, tf.fill([40], 1 / 40))
    """
    anchor_logits = tf.cast(anchor_logits, tf.float32)
    neighbor_logits = tf.stop_gradient(tf.cast(neighbor_logits, tf.float32))
    prior = tf.cast(prior, tf.float32)
    adjusted = neighbor_logits - adjustment_weight * tf.math.log(prior)[None, :]
    targets = sharpen(tf.nn.softmax(adjusted, axis=-1), temperature)
    log_anchor = tf.nn.log_softmax(anchor_logits, axis=-1)
    # F.kl_div(log q, p, reduction="batchmean") = sum p (log p - log q) / B, with 0 log 0 = 0.
    kl = tf.math.xlogy(targets, targets) - targets * log_anchor
    loss = tf.reduce_sum(kl) / tf.cast(tf.shape(anchor_logits)[0], tf.float32)
    marginal = tf.reduce_mean(tf.nn.softmax(neighbor_logits, axis=-1), axis=0)
    new_prior = momentum * prior + (1.0 - momentum) * marginal
    return loss, new_prior / tf.reduce_sum(new_prior)


def uslt_global_loss(weak_logits, strong_logits, *, threshold=USLT_CONFIDENCE_THRESHOLD):
    """USL-T's confident, class-balanced self-labelling loss of one head.

    Args:
        weak_logits: [B, K] logits of the weak (officially: unaugmented) views;
            they choose the targets and get no gradient.
        strong_logits: [B, K] logits of the strong views of the same images.
        threshold: keep rows whose top probability exceeds this (0.95).

    Returns:
        Scalar float32 loss (0 when no row is confident).
    """
    weak_logits = tf.stop_gradient(tf.cast(weak_logits, tf.float32))
    strong_logits = tf.cast(strong_logits, tf.float32)
    num_clusters = tf.shape(weak_logits)[1]
    probabilities = tf.nn.softmax(weak_logits, axis=-1)
    targets = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    kept = tf.cast(tf.reduce_max(probabilities, axis=-1) > threshold, tf.float32)
    counts = tf.math.unsorted_segment_sum(kept, targets, num_clusters)  # [K]
    # w[c] = n / count[c]; a kept row's own class has count >= 1.
    weights = tf.reduce_sum(kept) / tf.maximum(tf.gather(counts, targets), 1.0) * kept
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets,
                                                                   logits=strong_logits)
    weight_sum = tf.reduce_sum(weights)
    return tf.math.divide_no_nan(tf.reduce_sum(weights * cross_entropy), weight_sum)

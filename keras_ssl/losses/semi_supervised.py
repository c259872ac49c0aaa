"""The losses of FixMatch, MixMatch and HierMatch, as their official code writes them.

Pure functions of tensors (float32 inside, whatever the compute dtype). The
sources are google-research/fixmatch `fixmatch.py:107-122` (FixMatch),
google-research/mixmatch `mixmatch.py:40-50, 81-84` and `libml/layers.py:166-175`
(MixMatch's label guess, loss and MixUp), and 07Agarg/HIERMATCH
`HIERMATCH-cifar-100-partial/train.py:302-322, 450-457` (the same per level).
"""

import tensorflow as tf


def _float(tensor):
    return tf.cast(tensor, tf.float32)


def masked_cross_entropy(logits, labels, count=None):
    """Mean softmax cross-entropy over the rows whose label is known (>= 0).

    Args:
        logits: [B, C].
        labels: int [B], -1 where the row has no label at this level.
        count: the number of known rows the mean divides by; default this
            batch's. A method on several replicas passes the global count
            over the number of replicas, so that the replicas' losses sum to
            the global mean.

    Returns:
        A float32 scalar; 0 when no row is known.
    """
    labels = tf.cast(labels, tf.int32)
    known = labels >= 0
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.maximum(labels, 0), logits=_float(logits))
    losses = tf.where(known, losses, 0.0)
    if count is None:
        count = tf.reduce_sum(tf.cast(known, tf.float32))
    return tf.reduce_sum(losses) / tf.maximum(_float(count), 1e-12)


def confidence_masked_cross_entropy(weak_logits, strong_logits, threshold):
    """FixMatch's unlabeled loss: the weak view's confident argmax taught to the strong view.

    The pseudo-label is the argmax of softmax(weak), kept where its
    probability is >= `threshold`; the loss is the mean over *all* rows of
    the masked cross-entropy (rows below the threshold count as 0), exactly
    `tf.reduce_mean(loss_xeu * pseudo_mask)` of the official code.

    Returns:
        (loss, mask_rate): float32 scalars; mask_rate is the share of rows kept.
    """
    probabilities = tf.stop_gradient(tf.nn.softmax(_float(weak_logits)))
    pseudo_labels = tf.argmax(probabilities, axis=1)
    mask = tf.cast(tf.reduce_max(probabilities, axis=1) >= threshold, tf.float32)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=pseudo_labels,
                                                            logits=_float(strong_logits))
    return tf.reduce_mean(losses * mask), tf.reduce_mean(mask)


def sharpen(probabilities, temperature):
    """p^(1/T) renormalised over the classes (the last axis): MixMatch's, PAWS's and
    USL-T's sharpening.

    A row of zeros (in PAWS, a query with no support of the matrix's classes)
    stays zeros instead of turning NaN, so it adds nothing to a cross-entropy.
    """
    powered = tf.pow(_float(probabilities), 1.0 / temperature)
    return tf.math.divide_no_nan(powered, tf.reduce_sum(powered, axis=-1, keepdims=True))


def guess_labels(logits_of_views, temperature):
    """MixMatch's label guess: the mean softmax over the K views, sharpened; no gradient.

    Args:
        logits_of_views: a list of K [B, C] logits of the same rows.
        temperature: T (0.5).
    """
    probabilities = tf.add_n([tf.nn.softmax(_float(logits)) for logits in logits_of_views])
    return tf.stop_gradient(sharpen(probabilities / len(logits_of_views), temperature))


def mix_rows(values, weights, permutation):
    """w_i values_i + (1 - w_i) values_perm(i): MixUp of any per-row tensor."""
    values = tf.convert_to_tensor(values)
    weights = tf.reshape(_float(weights), [-1] + [1] * (values.shape.rank - 1))
    return (tf.cast(weights, values.dtype) * values
            + tf.cast(1.0 - weights, values.dtype) * tf.gather(values, permutation))


def mixup(inputs, targets, weights, permutation):
    """Each row mixed with the row `permutation` sends it: w x + (1 - w) x[perm].

    Args:
        inputs: [N, ...] images.
        targets: [N, C] target distributions.
        weights: [N] mixing weights (MixMatch: lambda' = max(lambda, 1 - lambda)
            per row, so the row stays closest to itself).
        permutation: int [N].

    Returns:
        (mixed inputs, mixed targets).
    """
    return (mix_rows(inputs, weights, permutation),
            mix_rows(_float(targets), weights, permutation))


def mixmatch_loss(labeled_logits, labeled_targets, unlabeled_logits, unlabeled_targets,
                  known=None, counts=None):
    """MixMatch's two terms on mixed rows.

    Lx = mean over rows of -sum_c y_c log softmax(x)_c (soft targets);
    Lu = mean over rows *and classes* of (softmax(u) - q)^2, as
    `tf.reduce_mean(tf.square(labels_y - tf.nn.softmax(logits_y)))`, so its
    scale goes as 1/C (methods-c.md section 11 keeps that reduction).

    Args:
        labeled_logits, labeled_targets: [b, C] the labeled part of the mixed batch.
        unlabeled_logits, unlabeled_targets: [n, C] its unlabeled part.
        known: optional bool [b]: whether each labeled row's own label is
            known at this level. A row whose label is withheld (HierMatch's
            coarse-only examples at a finer level) was given a guessed
            target and counts as an unlabeled row: its squared error joins
            Lu instead of its cross-entropy joining Lx, as it would sit in
            the official code's unlabeled batch of that level.
        counts: optional (rows Lx divides by, rows Lu divides by); default
            this batch's. Methods on several replicas pass global counts over
            the replica count (`keras_ssl.methods.fixmatch.mean_count`).

    Returns:
        (Lx, Lu) float32 scalars.
    """
    labeled_probabilities = tf.nn.log_softmax(_float(labeled_logits))
    cross_entropy = -tf.reduce_sum(_float(labeled_targets) * labeled_probabilities, axis=1)
    labeled_error = tf.reduce_sum(tf.square(tf.exp(labeled_probabilities)
                                            - _float(labeled_targets)), axis=1)
    unlabeled_error = tf.reduce_sum(tf.square(tf.nn.softmax(_float(unlabeled_logits))
                                              - _float(unlabeled_targets)), axis=1)
    known = (tf.ones_like(cross_entropy) if known is None else tf.cast(known, tf.float32))
    if counts is None:
        counts = (tf.reduce_sum(known),
                  tf.cast(tf.shape(unlabeled_error)[0], tf.float32) + tf.reduce_sum(1.0 - known))
    classes = tf.cast(tf.shape(labeled_targets)[1], tf.float32)
    labeled = tf.reduce_sum(cross_entropy * known) / tf.maximum(_float(counts[0]), 1e-12)
    unlabeled = ((tf.reduce_sum(unlabeled_error) + tf.reduce_sum(labeled_error * (1.0 - known)))
                 / (tf.maximum(_float(counts[1]), 1e-12) * classes))
    return labeled, unlabeled


def l2_penalty(kernels):
    """sum_k ||k||^2 / 2 (`tf.nn.l2_loss`), FixMatch's weight decay term before its factor."""
    return tf.add_n([tf.nn.l2_loss(_float(kernel)) for kernel in kernels])

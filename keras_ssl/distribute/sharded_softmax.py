"""Softmax cross-entropy and top-K over classes split across replicas.

A classifier too large for one device (full instance classification: one
class per training image, N up to 1.28M) keeps only a contiguous block of
classes on each replica: replica r owns the global classes
[r * S, (r + 1) * S), S = ceil(N / R) (`keras_ssl.layers.ShardedClassifier`).
Every replica scores the all-gathered batch against its block, so it holds
the logits [B_global, S] of its classes only; the functions here combine the
blocks with collectives over [B_global]-sized vectors, never over the logits:

* the softmax normaliser from the global row maximum (a gather of R x B
  maxima: `ReplicaContext.all_reduce` has no MAX) and one all-reduce of the
  sums of exponentials and of the target logits, each taken from the replica
  that owns its class;
* the K largest logits of each row from R x K gathered candidates.

Outside a strategy, or with one replica, the collectives are the identity and
these are the ordinary unsharded computations.
"""

import tensorflow as tf

from keras_ssl.distribute.cross_replica import all_gather, all_reduce_sum


def _global_max(rows_max):
    """Maximum over replicas of a [B] tensor (the gather of R x B values)."""
    return tf.reduce_max(all_gather(rows_max[None, :]), axis=0)


def padding_mask(shard_width, shard_offset, num_classes):
    """[S] bool: which columns of a shard are real classes (global index < num_classes).

    The last shard is padded when R does not divide N (and with R > N a
    whole shard is padding).
    """
    columns = tf.range(shard_width, dtype=tf.int64) + tf.cast(shard_offset, tf.int64)
    return columns < tf.cast(num_classes, tf.int64)


def _local_positions(classes, shard_offset, shard_width):
    """(positions in this shard, owned mask) of global class indices."""
    positions = tf.cast(classes, tf.int64) - tf.cast(shard_offset, tf.int64)
    owned = (positions >= 0) & (positions < shard_width)
    return tf.where(owned, positions, tf.zeros_like(positions)), owned


def sharded_softmax_cross_entropy(local_logits, target_classes, target_weights, *,
                                  shard_offset, num_classes=None):
    """Per-row softmax cross-entropy of logits whose columns are split across replicas.

    Args:
        local_logits: [B, S] this replica's block of the logits: column c is
            global class `shard_offset + c`, for every row of the global
            batch (B is the same on every replica).
        target_classes: [B, T] int global class indices of the soft targets
            (T = 1 + K for the own class and K smoothed classes); the same on
            every replica. Classes within a row should be distinct.
        target_weights: [B, T] float target probabilities (a row normally
            sums to 1); the same on every replica. Not differentiated.
        shard_offset: global index of this replica's first class (int or
            scalar tensor; `ShardedClassifier.shard_offset`).
        num_classes: if given, columns with a global index >= num_classes
            (the padding of the last shard) are left out of the softmax. The
            shard width S is the logits' width; what it does not say is where
            the real classes end, hence this argument rather than a
            `shard_size`. `ShardedClassifier` already masks its padding
            logits to -inf, so it need not be passed for its logits.

    Returns:
        [B] float32 `sum_t w_t * (logsumexp_all(z) - z[c_t])` of the
        concatenated logits z of all replicas: the same value on every
        replica, equal to the unsharded loss up to float rounding.

    Gradients. The backward pass is local and has no collective: the
    gradient w.r.t. `local_logits` is `g[:, None] * (softmax - y)` restricted
    to this shard's columns, with g the upstream gradient of each row (g =
    1/B for a mean), i.e. exactly the corresponding columns of the
    unsharded gradient, provided every replica reduces the per-row loss the
    same way (e.g. `tf.reduce_mean`), as each uses its own upstream
    gradient. Autodiff through the all-reduces would instead sum
    the R replicas' upstream gradients (R times too large). The gradient
    w.r.t. features that were all-gathered before the logits then reaches
    each replica's own rows summed over replicas by `all_gather`'s backward
    pass: the full dL/d(features), from every shard. NOTE: the loss is the
    GLOBAL mean on every replica, not this replica's share; a training step
    that divides each replica's loss by R before summing gradients
    (`methods/base.py`) must multiply this term by R to keep the unsharded
    gradients.

    The row maximum used for stability is a constant of the backward pass:
    the loss does not depend on it.
    """
    local_logits = tf.convert_to_tensor(local_logits)
    dtype = local_logits.dtype
    logits = tf.cast(local_logits, tf.float32)
    if num_classes is not None:
        valid = padding_mask(tf.shape(logits, out_type=tf.int64)[1], shard_offset,
                             num_classes)
        logits = tf.where(valid[None, :], logits, tf.constant(-float("inf")))
    weights = tf.stop_gradient(tf.cast(target_weights, tf.float32))
    classes = tf.cast(target_classes, tf.int64)
    width = tf.shape(logits, out_type=tf.int64)[1]
    positions, owned = _local_positions(classes, shard_offset, width)
    owned_weights = tf.where(owned, weights, tf.zeros_like(weights))

    @tf.custom_gradient
    def loss_fn(z):
        # A shard made only of padding has max -inf; the global max is finite.
        row_max = tf.stop_gradient(_global_max(tf.reduce_max(z, axis=1)))
        shifted = z - row_max[:, None]
        local_sum = tf.reduce_sum(tf.exp(shifted), axis=1)
        picked = tf.gather(shifted, positions, axis=1, batch_dims=1)
        # Not owned: position 0 stands in, possibly a -inf padding logit (0 * -inf is NaN).
        picked = tf.where(owned, picked, tf.zeros_like(picked))
        local_target = tf.reduce_sum(owned_weights * picked, axis=1)
        # One all-reduce for both sums: each target logit counts once, on its owner.
        total_sum, target = tf.unstack(all_reduce_sum(tf.stack([local_sum, local_target])))
        log_normaliser = tf.math.log(total_sum)  # logsumexp(z) - row_max
        loss = log_normaliser * tf.reduce_sum(weights, axis=1) - target

        def grad(upstream):
            softmax = tf.exp(shifted - log_normaliser[:, None])
            rows = tf.broadcast_to(tf.range(tf.shape(z, out_type=tf.int64)[0])[:, None],
                                   tf.shape(positions))
            # Scattered, never one-hot: [B, T, S] would not fit at N = 1M.
            y = tf.tensor_scatter_nd_add(tf.zeros_like(z),
                                         tf.stack([rows, positions], axis=-1),
                                         owned_weights)
            return upstream[:, None] * (softmax * tf.reduce_sum(weights, axis=1)[:, None] - y)

        return loss, grad

    loss = loss_fn(logits)
    return loss if dtype == tf.float32 else tf.cast(loss, tf.float32)


def sharded_top_k(local_logits, k, *, shard_offset, exclude=None, num_classes=None):
    """The `k` largest logits of each row over all shards, and their global classes.

    Each replica takes its local top-k, the R x k candidates are
    all-gathered (replica order, i.e. class order), and the top-k of those is
    the global top-k. Ties go to the lower global class, as in `tf.math.top_k`
    of the concatenated logits.

    Args:
        local_logits: [B, S] this replica's block (see
            `sharded_softmax_cross_entropy`).
        k: number of classes per row; at most the number of real classes
            left after `exclude`.
        shard_offset: global index of this replica's first class.
        exclude: optional [B] int global class per row that is never
            selected (the image's own class).
        num_classes: padding columns (global index >= num_classes) are never
            selected.

    Returns:
        (values [B, k], classes [B, k] int64), the same on every replica, in
        decreasing order; no gradient (they select targets).
    """
    logits = tf.stop_gradient(tf.cast(local_logits, tf.float32))
    width = tf.shape(logits, out_type=tf.int64)[1]
    never = tf.constant(-float("inf"))
    if num_classes is not None:
        logits = tf.where(padding_mask(width, shard_offset, num_classes)[None, :],
                          logits, never)
    if exclude is not None:
        position, owned = _local_positions(exclude, shard_offset, width)
        excluded = owned[:, None] & (tf.range(width)[None, :] == position[:, None])
        logits = tf.where(excluded, never, logits)
    local_k = k if logits.shape[1] is None else min(k, logits.shape[1])
    values, indices = tf.math.top_k(logits, k=local_k, sorted=True)
    classes = tf.cast(indices, tf.int64) + tf.cast(shard_offset, tf.int64)
    # [B, k] -> [1, B, k] so the gather stacks replicas on a new leading axis.
    values = all_gather(values[None])
    classes = all_gather(classes[None])
    batch = tf.shape(logits)[0]
    values = tf.reshape(tf.transpose(values, [1, 0, 2]), [batch, -1])
    classes = tf.reshape(tf.transpose(classes, [1, 0, 2]), [batch, -1])
    if values.shape[1] is not None and values.shape[1] < k:
        raise ValueError(f"top-{k} needs at least {k} candidates per row; the shards "
                         f"offer {values.shape[1]} (k is larger than a shard).")
    top_values, picked = tf.math.top_k(values, k=k, sorted=True)
    return top_values, tf.gather(classes, picked, axis=1, batch_dims=1)


def hardest_class_targets(local_logits, own_class, k, alpha, *, shard_offset,
                          num_classes=None):
    """Label smoothing over the K hardest classes: the instance classifier's soft targets.

    Liu et al., "Train a One-Million-Way Instance Classifier for Unsupervised
    Visual Representation Learning", AAAI 2021: the own class gets 1 - alpha
    and the K classes with the largest current logit (for cosine logits, the
    largest cosine), never the own class, get alpha / K each.

    Args:
        local_logits: [B, S] this replica's block of the logits.
        own_class: [B] int global class of each row (the image's index).
        k: number of smoothed classes (K >= 1).
        alpha: smoothing mass in [0, 1].
        shard_offset, num_classes: as in `sharded_top_k`.

    Returns:
        (classes [B, 1 + K] int64, weights [B, 1 + K] float32) for
        `sharded_softmax_cross_entropy`; column 0 is the own class.
    """
    _, hardest = sharded_top_k(local_logits, k, shard_offset=shard_offset,
                               exclude=own_class, num_classes=num_classes)
    own = tf.cast(own_class, tf.int64)[:, None]
    classes = tf.concat([own, hardest], axis=1)
    batch = tf.shape(own)[0]
    weights = tf.concat([tf.fill([batch, 1], 1.0 - float(alpha)),
                         tf.fill([batch, k], float(alpha) / k)], axis=1)
    return classes, weights

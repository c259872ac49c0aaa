"""Online k-means over a memory bank, as InterCLR (and ODC before it) keeps its pseudo-labels.

InterCLR (Xie et al., "Delving into Inter-Image Invariance for Unsupervised
Visual Representations", IJCV 2022; official code on mmselfsup's `0.x` branch,
`models/memories/interclr_memory.py` and `core/hooks/interclr_hook.py`) and ODC
(Zhan et al., CVPR 2020) keep one L2-normalised feature and one cluster label
per training image, and K centroids, and refresh them every step:

1. write the step's (all-gathered) features into the bank (InterCLR replaces
   the old row: momentum 0.0 in keras_ssl's convention, see
   `momentum_update`) and relabel those rows to the centroid with the
   largest dot product (centroids are means, not renormalised);
2. every `centroid_update_interval` steps (10) recompute every centroid as the
   mean of its members' bank features (an empty cluster keeps its centroid);
3. every step dissolve the clusters smaller than `min_cluster_size` (20): move
   their members to the best remaining centroid, then refill each emptied id
   by splitting the currently largest cluster in two with 2-means (20
   iterations) and recompute both halves' centroids.

Here all of that is fixed-shape tensor code compiled with XLA
(`memory_kmeans_step`); the state lives in `keras_ssl.layers.ClusteredBank`,
which calls these kernels. Where it differs from the official code, and why:

* The 2-means split starts from the first member and the member farthest from
  it (sklearn's k-means++ with `random_state=0` there). If either half is
  smaller than `min_cluster_size` (the official code only checks for an empty
  half, and then splits at random) the cluster is split at the median of the
  members' projections on the line through the two 2-means centres. So after
  every update each cluster has at least `min_cluster_size` members, provided
  the bank holds at least 2 * min_cluster_size * num_clusters rows.
* The initial clustering (faiss k-means in the official hook) is
  `keras_ssl.ops.kmeans` with k-means++ seeding, or labels the caller passes
  (`settle_clusters` then gives every cluster its minimum size).
"""

import tensorflow as tf

_MOVE_CHUNK = 1024  # bank rows relabelled per pass when dissolving small clusters
_SPLIT_ITERS = 20  # 2-means iterations (the official sklearn max_iter)


def momentum_update(old, new, momentum):
    """The memory family's one momentum rule: `normalize(m * old + (1 - m) * normalize(new))`.

    `momentum` is the weight of the OLD row, as in NPID's memory bank (0.5)
    and in an EMA; 0.0 replaces the row by the normalised new one (InterCLR).
    Every bank in `keras_ssl.layers` and `memory_kmeans_step` use this rule.

    Args:
        old: [B, D] rows currently in the bank.
        new: [B, D] incoming rows (any norm: they are normalised first).
        momentum: a Python float in [0, 1].

    Example:
    >>> old, new = tf.constant([[1.0, 0.0]]), tf.constant([[0.0, 3.0]])
    >>> print(momentum_update(old, new, 0.5).numpy().round(4))
    [[0.7071 0.7071]]
    >>> momentum_update(old, new, 0.0).numpy().tolist()
    [[0.0, 1.0]]
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum={momentum} must lie in [0, 1] (the weight of the old row).")
    new = tf.math.l2_normalize(tf.cast(new, tf.float32), axis=1)
    if momentum == 0.0:
        return new  # replace: the old rows need not even be read
    old = tf.cast(old, tf.float32)
    return tf.math.l2_normalize(momentum * old + (1.0 - momentum) * new, axis=1)


@tf.function(jit_compile=True)
def memory_kmeans_step(bank, assignments, centroids, indices, features, recompute,
                       momentum, min_cluster_size):
    """One InterCLR memory update as a pure function of the state.

    Args:
        bank: [N, D] unit-norm features; assignments: [N] int32;
        centroids: [K, D]; indices: [B] int32 rows to write;
        features: [B, D] their new features (normalised here);
        recompute: bool scalar, recompute all centroids from the bank.
        momentum: weight of the OLD row (`momentum_update`; InterCLR: 0.0,
            replace).
        min_cluster_size: clusters smaller than this are dissolved.

    Returns:
        (rows, assignments, centroids, change_ratio): `rows` [B, D] are the
        features written at `indices` (the new bank is
        `tensor_scatter_nd_update(bank, indices[:, None], rows)`).
    """
    # With momentum 0.0 the old rows are not read (momentum_update skips them).
    old = tf.gather(bank, indices) if momentum else None
    features = momentum_update(old, features, momentum)
    rows = indices[:, None]
    bank = tf.tensor_scatter_nd_update(bank, rows, features)
    labels = tf.argmax(tf.matmul(features, centroids, transpose_b=True), axis=1,
                       output_type=tf.int32)
    change_ratio = tf.reduce_mean(
        tf.cast(tf.not_equal(labels, tf.gather(assignments, indices)), tf.float32))
    assignments = tf.tensor_scatter_nd_update(assignments, rows, labels)
    centroids = tf.cond(recompute,
                        lambda: centroids_from_bank(bank, assignments, centroids),
                        lambda: centroids)
    assignments, centroids = dissolve_small_clusters(bank, assignments, centroids,
                                                     min_cluster_size)
    return features, assignments, centroids, change_ratio


@tf.function(jit_compile=True)
def settle_clusters(bank, assignments, previous, min_cluster_size):
    """Centroids of a fresh labelling, then no cluster below the minimum size.

    Returns (assignments [N] int32, centroids [K, D]); empty clusters keep
    `previous` centroids.
    """
    centroids = centroids_from_bank(bank, assignments, previous)
    return dissolve_small_clusters(bank, assignments, centroids, min_cluster_size)


def cluster_sizes(assignments, num_clusters):
    return tf.math.unsorted_segment_sum(tf.ones_like(assignments), assignments,
                                        num_clusters)


def centroids_from_bank(bank, assignments, previous):
    """Member means (not renormalised, as InterCLR); empty clusters keep `previous`."""
    num_clusters = previous.shape[0]
    sums = tf.math.unsorted_segment_sum(bank, assignments, num_clusters)
    counts = tf.cast(cluster_sizes(assignments, num_clusters), bank.dtype)[:, None]
    return tf.where(counts > 0, sums / tf.maximum(counts, 1.0), previous)


def dissolve_small_clusters(bank, assignments, centroids, min_cluster_size):
    """ODC/InterCLR's `deal_with_small_clusters` with fixed shapes."""
    num_clusters = centroids.shape[0]
    small = cluster_sizes(assignments, num_clusters) < min_cluster_size
    # With every cluster small there is nowhere to move members to.
    needed = tf.reduce_any(small) & ~tf.reduce_all(small)
    return tf.cond(needed,
                   lambda: _dissolve(bank, assignments, centroids, small,
                                     min_cluster_size),
                   lambda: (assignments, centroids))


def _dissolve(bank, assignments, centroids, small, min_cluster_size):
    num_rows, num_clusters = bank.shape[0], centroids.shape[0]
    chunk = min(num_rows, _MOVE_CHUNK)
    barred = tf.where(small, float("-inf"), 0.0)[None, :]

    # 1. Relabel the members of small clusters, a chunk of rows at a time.
    def move(assignments, pending):
        _, rows = tf.math.top_k(tf.cast(pending, tf.float32), chunk)
        scores = tf.matmul(tf.gather(bank, rows), centroids, transpose_b=True) + barred
        labels = tf.where(tf.gather(pending, rows),
                          tf.argmax(scores, axis=1, output_type=tf.int32),
                          tf.gather(assignments, rows))
        return (tf.tensor_scatter_nd_update(assignments, rows[:, None], labels),
                tf.tensor_scatter_nd_update(pending, rows[:, None],
                                            tf.zeros([chunk], tf.bool)))

    assignments, _ = tf.while_loop(lambda _, pending: tf.reduce_any(pending), move,
                                   (assignments, tf.gather(small, assignments)))

    # 2. Refill each emptied id by splitting the currently largest cluster.
    emptied = tf.argsort(tf.cast(~small, tf.int32), stable=True)  # small ids first
    num_emptied = tf.reduce_sum(tf.cast(small, tf.int32))

    def refill(j, assignments, centroids):
        empty_id = tf.gather(emptied, j)
        sizes = cluster_sizes(assignments, num_clusters)
        largest = tf.argmax(sizes, output_type=tf.int32)
        members = tf.equal(assignments, largest)
        moved = _split_in_two(bank, members, tf.gather(sizes, largest), min_cluster_size)
        assignments = tf.where(moved, empty_id, assignments)
        kept = members & ~moved
        centroids = tf.tensor_scatter_nd_update(
            centroids, tf.stack([[empty_id], [largest]]),
            tf.stack([_mean(bank, moved), _mean(bank, kept)]))
        return j + 1, assignments, centroids

    _, assignments, centroids = tf.while_loop(
        lambda j, *_: j < num_emptied, refill, (tf.constant(0), assignments, centroids))
    return assignments, centroids


def _mean(bank, rows):
    weights = tf.cast(rows, bank.dtype)[:, None]
    return tf.reduce_sum(bank * weights, axis=0) / tf.maximum(tf.reduce_sum(weights), 1.0)


def _split_in_two(bank, members, size, min_cluster_size):
    """Boolean [N]: the members that form the second half of a 2-means split."""
    first = tf.gather(bank, tf.argmax(tf.cast(members, tf.int32), output_type=tf.int32))
    spread = tf.where(members, tf.reduce_sum(tf.square(bank - first), axis=1), -1.0)
    centre_a, centre_b = first, tf.gather(bank, tf.argmax(spread, output_type=tf.int32))

    def side_b(centre_a, centre_b):
        # Closer to b than to a: x.(b - a) > (|b|^2 - |a|^2) / 2.
        threshold = 0.5 * (tf.reduce_sum(tf.square(centre_b))
                           - tf.reduce_sum(tf.square(centre_a)))
        return members & (tf.linalg.matvec(bank, centre_b - centre_a) > threshold)

    def lloyd(i, centre_a, centre_b):
        to_b = side_b(centre_a, centre_b)
        to_a = members & ~to_b
        centre_a = tf.where(tf.reduce_any(to_a), _mean(bank, to_a), centre_a)
        centre_b = tf.where(tf.reduce_any(to_b), _mean(bank, to_b), centre_b)
        return i + 1, centre_a, centre_b

    _, centre_a, centre_b = tf.while_loop(lambda i, *_: i < _SPLIT_ITERS, lloyd,
                                          (tf.constant(0), centre_a, centre_b))
    to_b = side_b(centre_a, centre_b)
    size_b = tf.reduce_sum(tf.cast(to_b, tf.int32))
    balanced = (size_b >= min_cluster_size) & (size - size_b >= min_cluster_size)

    def median_split():
        projection = tf.where(members, tf.linalg.matvec(bank, centre_b - centre_a),
                              float("-inf"))
        order = tf.argsort(projection, direction="DESCENDING", stable=True)
        rank = tf.scatter_nd(order[:, None], tf.range(tf.shape(order)[0]),
                             tf.shape(order))
        return members & (rank < size // 2)

    return tf.cond(balanced, lambda: to_b, median_split)


def __getattr__(name):
    # The stateful layer moved to keras_ssl.layers; imported lazily, because
    # keras_ssl.layers imports this module.
    if name == "MemoryBankKMeans":
        from keras_ssl.layers.memory_bank import MemoryBankKMeans
        return MemoryBankKMeans
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

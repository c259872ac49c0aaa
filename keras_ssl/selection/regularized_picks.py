"""USL's regularised pick of one example per cluster.

The densest example of every cluster is a good label, but dense examples of
neighbouring clusters tend to sit next to each other on the border between
them. USL (Wang et al., ECCV 2022) spreads the picks with a regulariser that
repels each candidate from the picks of the *other* clusters, and refines it
over a few rounds. The official rule, `get_selection_with_reg` in
`shared/utils/nn_utils_cifar.py:31-86` (TonyLianLong/
UnsupervisedSelectiveLabeling, commit ceaab3c), with R = 0 at the start:

    repeat `iters` times:
        in every cluster c (in index order, until `budget` picks):
            pick argmax over members i of  1 / d_i - w * R_i
        D_ij = |x_i - x_pick_j|^2           squared distance to every pick j
        D_ij = 1e10 where i is in the cluster of pick j
        D_ij = 1e10 where D_ij >= horizon
        R_i = momentum * R_i + (1 - momentum) * sum_j D_ij ** -alpha

The picks of the last round are the answer (the regulariser computed after
it is never used, so it is not computed here). d_i is the mean squared
distance to the kNN (`density.py`). Defaults (`selective_labeling/
config.py:43-48`, CIFAR-10): iters 10, w 0.5, momentum 0.9, horizon 4,
alpha 0.5; CIFAR-100 (`configs/cifar100_usl.yaml`): w 1, horizon 1, alpha 1.

Where this differs, and why:

* "The cluster of pick j": the official code masks with
  `one_hot(cluster_labels, budget)`, i.e. it assumes pick j came from
  cluster j. That holds when clusters 0..budget-1 are all non-empty; with an
  empty cluster (or more clusters than picks: the official 2501 centroids
  for 2500 labels) the columns shift and the wrong distances are masked.
  Here the mask compares each row's cluster with the pick's own cluster,
  which is what the official mask means, and equals it whenever its
  assumption holds.
* An ignored distance stays the official sentinel 1e10, so it still adds
  1e10 ** -alpha (1e-5 for alpha 0.5) to R, as officially.
* A distance of exactly 0 to a pick of another cluster (a duplicate image)
  makes the official code stop on an assertion; here it is floored at 1e-12,
  so the duplicate gets a huge penalty and is not picked.
* Ties in a cluster go to the lowest dataset index (torch's argmax on CUDA
  does not promise which).
"""

import numpy as np
import tensorflow as tf

# selective_labeling/config.py: cfg.USL.REG.*.
USL_REG_ITERS = 10
USL_REG_WEIGHT = 0.5
USL_REG_MOMENTUM = 0.9
USL_REG_HORIZON = 4.0
USL_REG_ALPHA = 0.5
# The official value that marks a distance to ignore (nn_utils_cifar.py:67, 77).
IGNORED_DISTANCE = 1e10
# A zero distance to another cluster's pick is raised to this (see the module docstring).
MIN_DISTANCE = 1e-12
# Most row-to-pick distances the regulariser holds at once (64 MB of float32).
ROW_BLOCK_SCORES = 1 << 24


def pick_per_cluster(scores, assignments, num_clusters, budget):
    """Indices of the best-scoring member of each cluster, clusters in index order.

    Empty clusters are skipped; at most `budget` indices are returned (the
    official loop stops once it has `budget`).

    Args:
        scores: [N] float, higher is better.
        assignments: [N] int cluster index of each row, in [0, num_clusters).
        num_clusters: K.
        budget: most picks to return.

    Returns:
        (picks [M] int64, their clusters [M] int64), M <= budget.
    """
    scores = tf.convert_to_tensor(scores, tf.float32)
    assignments = tf.convert_to_tensor(assignments, tf.int32)
    best = tf.math.unsorted_segment_max(scores, assignments, num_clusters)
    positions = tf.range(tf.shape(scores)[0])
    is_best = tf.equal(scores, tf.gather(best, assignments))
    # The lowest index among a cluster's best rows; N for an empty cluster.
    candidates = tf.where(is_best, positions, tf.shape(scores)[0])
    first_best = tf.math.unsorted_segment_min(candidates, assignments, num_clusters).numpy()
    clusters = np.flatnonzero(first_best < int(scores.shape[0]))[:budget]
    return first_best[clusters].astype(np.int64), clusters.astype(np.int64)


def regularizer_update(features, assignments, picks, pick_clusters, previous, *,
                       momentum=USL_REG_MOMENTUM, horizon=USL_REG_HORIZON,
                       alpha=USL_REG_ALPHA):
    """One step of the official regulariser: R <- m R + (1 - m) sum_j D_ij ** -alpha.

    Args:
        features: [N, D] float32 tensor.
        assignments: [N] int cluster of each row.
        picks: [S] row indices of the current picks.
        pick_clusters: [S] cluster of each pick.
        previous: [N] float32 regulariser R.
        momentum, horizon, alpha: as in the module docstring (horizon None: no horizon).

    Returns:
        [N] float32, the new R.
    """
    features = tf.convert_to_tensor(features, tf.float32)
    assignments = tf.cast(tf.convert_to_tensor(assignments), tf.int64)
    picked = tf.gather(features, picks)
    pick_clusters = tf.cast(tf.convert_to_tensor(pick_clusters), tf.int64)
    num_rows = int(features.shape[0])
    # Rows in blocks: the [rows, S] distances of 50,000 rows to 2,500 picks
    # would be 500 MB at once.
    block = max(1, ROW_BLOCK_SCORES // max(int(picked.shape[0]), 1))
    repulsion = tf.concat([
        _repulsion(features[start:start + block], assignments[start:start + block], picked,
                   pick_clusters, horizon, alpha)
        for start in range(0, num_rows, block)], axis=0)
    return momentum * tf.convert_to_tensor(previous, tf.float32) + (1.0 - momentum) * repulsion


def _repulsion(rows, row_clusters, picked, pick_clusters, horizon, alpha):
    """[rows] sum over the picks of the (masked) squared distance ** -alpha."""
    squared_norms = tf.reduce_sum(tf.square(rows), axis=1, keepdims=True)
    picked_norms = tf.reduce_sum(tf.square(picked), axis=1)[None, :]
    distances = squared_norms - 2.0 * tf.matmul(rows, picked, transpose_b=True) + picked_norms
    distances = tf.maximum(distances, MIN_DISTANCE)
    ignored = tf.equal(row_clusters[:, None], pick_clusters[None, :])
    if horizon is not None:
        ignored |= distances >= horizon
    distances = tf.where(ignored, IGNORED_DISTANCE, distances)
    return tf.reduce_sum(tf.pow(distances, -float(alpha)), axis=1)


def regularized_picks(features, mean_distances, assignments, num_clusters, budget, *,
                      iters=USL_REG_ITERS, weight=USL_REG_WEIGHT, momentum=USL_REG_MOMENTUM,
                      horizon=USL_REG_HORIZON, alpha=USL_REG_ALPHA):
    """USL's picks: one example per cluster, dense and away from the other picks.

    Args:
        features: [N, D] features (USL: L2-normalised).
        mean_distances: [N] mean squared kNN distance (`mean_knn_distance`).
        assignments: [N] k-means cluster of each row.
        num_clusters: K, the number of k-means clusters (>= budget).
        budget: number of picks.
        iters: rounds of picking (the first uses density alone).
        weight: w, the weight of the regulariser against the density.
        momentum: m of the regulariser's moving average.
        horizon: squared distance beyond which picks do not repel (None: no limit).
        alpha: exponent of the repulsion D ** -alpha.

    Returns:
        [budget] int64 dataset indices, in the order of their clusters.

    Raises:
        ValueError: when fewer than `budget` clusters have members.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}.")
    features = tf.convert_to_tensor(features, tf.float32)
    density = 1.0 / tf.convert_to_tensor(mean_distances, tf.float32)
    assignments = tf.convert_to_tensor(assignments, tf.int32)
    regularizer = tf.zeros_like(density)
    for round_index in range(iters):
        picks, pick_clusters = pick_per_cluster(density - weight * regularizer, assignments,
                                                num_clusters, budget)
        if len(picks) < budget:
            raise ValueError(
                f"Only {len(picks)} of the {num_clusters} clusters have members, fewer than the "
                f"budget {budget}: k-means left clusters empty. Cluster into more clusters than "
                "the budget (the official code uses 2501 for 2500 labels), try another seed or "
                "k-means++ seeding, or pick fewer.")
        if round_index < iters - 1:
            regularizer = regularizer_update(features, assignments, picks, pick_clusters,
                                             regularizer, momentum=momentum, horizon=horizon,
                                             alpha=alpha)
    return picks

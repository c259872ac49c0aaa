"""kNN density of every training example: USL's "representativeness".

USL (Wang, Lian, Yu, "Unsupervised Selective Labeling for More Effective
Semi-Supervised Learning", ECCV 2022; official code
TonyLianLong/UnsupervisedSelectiveLabeling, commit ceaab3c) scores an
example by how crowded its neighbourhood is: `usl-cifar.py:47-50` takes the
k = 400 nearest neighbours (`config.py`: `USL.KNN_K = 400`) by squared
Euclidean distance, averages those distances, and uses the inverse of the
mean as the density.

The official kNN (`shared/utils/nn_utils.py:201-231`, `partitioned_kNN`)
searches the training set for its own rows, so every example is its own
first neighbour at distance 0 and counts as one of the k. The same holds
here: keep k, not k + 1, to match.

The search reuses `keras_ssl.ops.topk_neighbors` (dot products, chunked) by
augmenting the vectors: with queries [2x, -1] and bank rows [y, |y|^2] the
dot product is 2 x.y - |y|^2 = |x|^2 - |x - y|^2, which orders the bank by
squared distance for each query.
"""

import numpy as np
import tensorflow as tf

from keras_ssl.ops.neighbors import topk_neighbors

# usl-cifar.py: cfg.USL.KNN_K.
USL_KNN_K = 400


def knn_distances(features, k=USL_KNN_K):
    """Squared Euclidean distances to the k nearest rows of `features`, self included.

    Args:
        features: [N, D] array or tensor.
        k: neighbours per row, 1 <= k <= N (the row itself is the first).

    Returns:
        (distances [N, k] float32, indices [N, k] int32) as NumPy arrays,
        nearest first. Distances are clipped at 0 (float rounding can make
        the distance of a row to itself a tiny negative number).

    Example:
    >>> d, i = knn_distances(np.array([[0., 0.], [3., 4.], [0., 1.]]), k=2)
    >>> d.tolist(), i[:, 0].tolist()
    ([[0.0, 1.0], [0.0, 18.0], [0.0, 1.0]], [0, 1, 2])
    """
    features = tf.cast(tf.convert_to_tensor(features), tf.float32)
    num_rows = int(features.shape[0])
    if not 1 <= k <= num_rows:
        raise ValueError(f"knn k={k} must be between 1 and the number of examples {num_rows}; "
                         f"USL's official k is {USL_KNN_K}, which needs at least that many "
                         "examples: pass a smaller k for a smaller set.")
    squared_norms = tf.reduce_sum(tf.square(features), axis=1, keepdims=True)
    queries = tf.concat([2.0 * features, -tf.ones_like(squared_norms)], axis=1)
    bank = tf.concat([features, squared_norms], axis=1)
    indices, scores = topk_neighbors(queries, bank, int(k))
    distances = tf.maximum(squared_norms - scores, 0.0)
    return distances.numpy(), indices.numpy()


def mean_knn_distance(features, k=USL_KNN_K):
    """[N] mean squared distance to the k nearest rows (self included): USL's `neighbors_dist`.

    The density is its inverse, `1 / mean_knn_distance`; the selection keeps
    the distance, as the official code does, and inverts it when scoring.
    """
    distances, _ = knn_distances(features, k)
    return distances.mean(axis=1).astype(np.float32)

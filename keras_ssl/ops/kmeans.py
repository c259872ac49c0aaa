"""Batch k-means (Lloyd's algorithm) as CLD runs it on each training batch.

CLD (Wang, Liu, Yu, "Unsupervised Feature Learning by Cross-Level Instance-Group
Discrimination", CVPR 2021; official code `spectral_clustering.py::KMeans` in
frank-xwang/CLD-UnsupervisedLearning) clusters the group-branch features of one
view with a few Lloyd iterations, starting from the first K rows of the batch,
and back-propagates through the centroids into the features.

This kernel does the same with fixed shapes so XLA can compile it:

* assignment: argmin of the squared Euclidean distance (or, with
  `spherical=True`, argmax of the cosine to unit-norm centroids);
* update: the mean of the members, computed as a one-hot matrix product so it
  is a plain differentiable function of the features.

Where it differs from the official code, and why:

* An empty cluster keeps its previous centroid. The official code divides by a
  count clamped to 1, which turns an empty cluster into a zero vector that can
  still win assignments later; keeping the centroid is the usual Lloyd rule and
  never produces NaN or a degenerate zero centroid.
* Only the last update is differentiable. The earlier iterations only choose
  the final hard assignment (argmin has no gradient), so they run on
  stop-gradient features. The returned centroids are the means of the features
  under the returned assignment, and gradients flow to every member. (Through
  an empty cluster's kept centroid no gradient flows; in the official code that
  centroid is zero and has none either.)
* When K exceeds the batch, `init="first"` pads the missing initial centroids
  with zeros, which is what `x[:K]` then amounts to in the official code
  (see the CLD pitfalls in the method notes); prefer K <= batch.
* `init="kmeans++"` and `init="random"` are extras (stateless, so a seed gives
  the same centroids on every replica and every run).
"""

import tensorflow as tf

INITS = ("first", "kmeans++", "random")


def kmeans(features, num_clusters, num_iters, init="first", spherical=False, seed=0):
    """Clusters the rows of `features` into `num_clusters` groups.

    Args:
        features: [N, D] float tensor (any float dtype; the maths runs in float32).
        num_clusters: K, a Python int.
        num_iters: number of Lloyd iterations (assign, then update), >= 1.
            CLD uses 5.
        init: "first" (the first K rows, as CLD), "kmeans++" or "random"
            (K distinct rows); the last two are deterministic given `seed`.
        spherical: L2-normalise the centroids after each update and assign by
            cosine similarity.
        seed: Python int seed of the stateless random initialisations.

    Returns:
        (assignments [N] int32, centroids [K, D] in the dtype of `features`).
        The centroids are the means of the features under the returned
        assignments (normalised if `spherical`); gradients flow through them.

    Example:
    >>> x = tf.constant([[0., 0.], [10., 10.], [0., 1.], [10., 11.]])
    >>> assignments, centroids = kmeans(x, num_clusters=2, num_iters=3)
    >>> assignments.numpy().tolist()
    [0, 1, 0, 1]
    """
    if init not in INITS:
        raise ValueError(f"init={init!r} is not one of {', '.join(INITS)}.")
    if num_iters < 1:
        raise ValueError(f"num_iters must be >= 1, got {num_iters}.")
    if num_clusters < 1:
        raise ValueError(f"num_clusters must be >= 1, got {num_clusters}.")
    assignments, centroids = _kmeans(
        features, num_clusters=int(num_clusters), num_iters=int(num_iters),
        init=init, spherical=bool(spherical), seed=int(seed))
    return assignments, tf.cast(centroids, features.dtype)


@tf.function(jit_compile=True)
def _kmeans(features, num_clusters, num_iters, init, spherical, seed):
    x = tf.cast(features, tf.float32)
    frozen = tf.stop_gradient(x)
    centroids = initial_centroids(frozen, num_clusters, init, seed)
    if spherical:
        centroids = tf.math.l2_normalize(centroids, axis=1)

    def lloyd_step(_, centroids):
        assignments = assign(frozen, centroids, spherical)
        return assignments, update(frozen, assignments, centroids, spherical)

    # The first num_iters - 1 iterations only decide the final assignment.
    _, centroids = tf.while_loop(
        lambda i, *_: i < num_iters - 1,
        lambda i, a, c: (i + 1, *lloyd_step(a, c)),
        (tf.constant(0), tf.zeros(tf.shape(x)[:1], tf.int32), centroids))[1:]
    assignments = assign(frozen, centroids, spherical)
    return assignments, update(x, assignments, tf.stop_gradient(centroids), spherical)


# Largest [rows, K] score block `assign` materialises at once (128 MB of
# float32): a whole memory bank (InterCLR's initial clustering: 1.28M rows x
# 10,000 clusters, 51 GB of scores) is assigned block by block instead.
MAX_SCORES = 1 << 25


def assign(features, centroids, spherical, max_scores=MAX_SCORES):
    """Index of the nearest centroid of every row (float32 inputs).

    Rows are scored against all centroids in blocks of at most `max_scores`
    scores, so memory stays bounded for any number of rows.
    """
    num_rows, num_clusters = features.shape[0], centroids.shape[0]
    block = max(1, max_scores // max(num_clusters or 1, 1))
    if num_rows is None or num_rows <= block:
        return _nearest(features, centroids, spherical)
    num_blocks = -(-num_rows // block)
    padded = tf.pad(features, [[0, num_blocks * block - num_rows], [0, 0]])
    blocks = tf.reshape(padded, [num_blocks, block, features.shape[1]])
    nearest = tf.map_fn(lambda rows: _nearest(rows, centroids, spherical), blocks,
                        fn_output_signature=tf.int32, parallel_iterations=1)
    return tf.reshape(nearest, [-1])[:num_rows]


def _nearest(features, centroids, spherical):
    scores = tf.matmul(features, centroids, transpose_b=True)  # [N, K]
    if not spherical:
        # argmin |x - c|^2 = argmax (x.c - |c|^2 / 2); |x|^2 is the same for all c.
        scores -= 0.5 * tf.reduce_sum(tf.square(centroids), axis=1)[None, :]
    return tf.argmax(scores, axis=1, output_type=tf.int32)


def update(features, assignments, previous, spherical):
    """Means of the members; an empty cluster keeps its previous centroid."""
    # Segment sums, not a one-hot [N, K] matmul: memory stays O(K * D), which
    # matters for a whole memory bank (1.28M rows x 10,000 clusters would be a
    # 51 GB one-hot), and the gradient still reaches every member row.
    num_clusters = tf.shape(previous)[0]
    sums = tf.math.unsorted_segment_sum(features, assignments, num_clusters)  # [K, D]
    counts = tf.math.unsorted_segment_sum(
        tf.ones_like(features[:, :1]), assignments, num_clusters)  # [K, 1]
    means = sums / tf.maximum(counts, 1.0)
    if spherical:
        means = tf.math.l2_normalize(means, axis=1)
    return tf.where(counts > 0, means, previous)


def initial_centroids(features, num_clusters, init, seed):
    """[K, D] starting centroids chosen from the rows of `features`."""
    num_rows = tf.shape(features)[0]
    if init == "first":
        first = features[:num_clusters]
        missing = num_clusters - tf.shape(first)[0]
        return tf.pad(first, [[0, missing], [0, 0]])
    if init == "random":
        noise = tf.random.stateless_uniform([num_rows], seed=[seed, 0])
        return tf.gather(features, tf.math.top_k(noise, num_clusters).indices)
    return _kmeans_plus_plus(features, num_clusters, seed)


def _gumbel_argmax(logits, seed):
    """A sample of the categorical distribution softmax(logits) (Gumbel-max)."""
    uniform = tf.random.stateless_uniform(tf.shape(logits), seed=seed,
                                          minval=1e-12, maxval=1.0)
    return tf.argmax(logits - tf.math.log(-tf.math.log(uniform)), output_type=tf.int32)


def _kmeans_plus_plus(features, num_clusters, seed):
    """Arthur & Vassilvitskii's D^2 seeding with stateless random draws."""
    num_rows = tf.shape(features)[0]
    first = _gumbel_argmax(tf.zeros([num_rows]), [seed, 0])
    centroids = tf.tensor_scatter_nd_update(
        tf.zeros([num_clusters, tf.shape(features)[1]]), [[0]], tf.gather(features, [first]))
    nearest = tf.reduce_sum(tf.square(features - tf.gather(features, first)), axis=1)

    def body(k, centroids, nearest):
        # P(row) proportional to its squared distance to the nearest chosen centroid.
        row = _gumbel_argmax(tf.math.log(nearest), [seed, k])
        chosen = tf.gather(features, row)
        centroids = tf.tensor_scatter_nd_update(centroids, [[k]], chosen[None])
        distance = tf.reduce_sum(tf.square(features - chosen), axis=1)
        return k + 1, centroids, tf.minimum(nearest, distance)

    return tf.while_loop(lambda k, *_: k < num_clusters, body,
                         (tf.constant(1), centroids, nearest))[1]

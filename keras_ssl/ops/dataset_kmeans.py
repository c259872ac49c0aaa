"""k-means of a whole training set: the E-step of NCC (ProPos), IFND and CLIM.

Between epochs these methods embed every training image and cluster the
features (tens of thousands of rows on CIFAR, 1.28M x 128 on ImageNet).
`dataset_kmeans` does that with ProPos's clustering: Hzzone/ProPos
`models/basic_template.py:486-496` (commit cc35d8c) L2-normalises the
features (`:520-522`) and calls `torch_clustering.PyTorchKMeans(
init='k-means++', max_iter=300, tol=1e-4, metric='cosine', random_state=0,
distributed=True)` from Hzzone/torch_clustering (commit b7fb417). Its rules,
reproduced here (files under `torch_clustering/`):

* Restarts: `n_init` is not set, so its default 10 applies
  (`kmeans/kmeans.py:25`); restart r is seeded with `random_state + r`
  (`:74`) and the run with the lowest inertia is kept (`:111-113`). Here:
  `num_inits=10` restarts, restart r seeded with the pair (seed, r).
* Seeding: greedy k-means++ as scikit-learn's (`kmeans/kmeans_plus_plus.py`):
  the first centre is a uniformly drawn row (`:89`); each further centre is
  the best of `2 + int(log K)` candidates (`:85`), each drawn with
  probability proportional to its distance to the closest centre chosen so
  far (`:105-111`), the best being the one whose addition leaves the smallest
  total distance (`:114-125`). Under the cosine metric the distance is
  1 - cos (`__base__.py:78-83`), which for unit rows is half the squared
  Euclidean distance: the D^2 sampling of Arthur & Vassilvitskii.
* Iteration (`kmeans/kmeans.py:85-142`): assign every row to its closest
  centre; then repeatedly set each centre to the mean of its rows and
  reassign. It stops when no assignment changed ("strict convergence",
  `:122`), or when the centres moved by at most the tolerance in total, the
  shift of one centre being its cosine distance 1 - cos(old, new)
  (`:120, :131-132`), or after `max_iter` updates.
* Tolerance: relative to the data, `tol * mean(var(X, dim=0))` with the
  unbiased (N - 1) variance of torch.var (`:70`), as scikit-learn scales it.

Where this differs, and why:

* An empty cluster keeps its previous centre (the Lloyd rule of
  `keras_ssl.ops.kmeans.update`, reused here). torch_clustering divides by
  counts + 1e-6 (`kmeans/kmeans.py:99-104`): the centre becomes zero, with
  cosine 0 to every row (dead for features in a cone; meaningless for CLIM's
  and IFND's similarity to the centre), and its shift 1 - cos(0, 0) = 1
  disables the tolerance stop.
* Centres are returned unit-norm (torch_clustering: the raw means, of the
  same directions, which is all the cosine metric sees).
* With `spherical=True` the rows are L2-normalised first, as ProPos does
  before its call; torch_clustering's metric compares directions but its
  centres are means of the rows as given, which is the same for unit rows.
* Restarts are compared by the sum of the final `scores` (cosines);
  torch_clustering keeps the lowest inertia, sum(1 - cos), of any iteration
  (`:167-177`): the same choice, as Lloyd never increases the inertia.
* Random numbers come from TensorFlow's stateless generators (same seed,
  same result on every replica and every run; not torch's numbers). The
  candidates are drawn as officially, by `searchsorted` of uniform values in
  the cumulative sum of the distances, but the sum is float32, not float64
  (TPUs have no float64).
* ProPos's `distributed=True` runs 10 restarts in each of its W processes
  (`kmeans/kmeans.py:74-75, 151-156`); here `num_inits` in all, on features
  the caller gathered, every replica computing the same result.
* `spherical=False` (Euclidean; ProPos does not use it): candidates are drawn
  proportional to the squared distance, and the objective and the centre
  shift are squared distances, as in scikit-learn's `_kmeans.py`;
  torch_clustering's Euclidean metric is the unsquared `cdist`
  (`__base__.py:86-89`).

Scale: rows are assigned `chunk_size` at a time (a [chunk_size, K] score
block, never N x K), centres are updated by segment sums, the iterations run
in a `tf.while_loop`, the seeding keeps [N, 2 + log K] values. Both kernels
compile (XLA) once per shape and settings (random values, tolerance and
iteration budget are tensors). On GPU the segment sums use atomics (last-bit
differences between runs); on CPU runs repeat exactly.
"""

import dataclasses
import math

import tensorflow as tf

from keras_ssl.ops.kmeans import update


@dataclasses.dataclass(frozen=True)
class KMeansResult:
    """One clustering of the rows of a feature matrix.

    Attributes:
        assignments: [N] int32 tensor, the index of each row's centre.
        centroids: [K, D] float32 tensor, unit-norm when spherical.
        iterations: centre updates run (a Python int when run eagerly, else
            an int32 tensor).
        scores: [N] float32 tensor, each row's similarity to its centre: the
            cosine when spherical, minus the squared Euclidean distance
            otherwise. IFND ranks rows by it to accept the most confident.
    """

    assignments: tf.Tensor
    centroids: tf.Tensor
    iterations: int
    scores: tf.Tensor


def dataset_kmeans(features, num_clusters, *, max_iters=300, tolerance=1e-4, spherical=True,
                   seed=0, chunk_size=8192, num_inits=10):
    """Clusters the rows of `features` with k-means++ and Lloyd iterations.

    Args:
        features: [N, D] NumPy array or tensor, any real dtype (float16 and
            bfloat16 are computed in float32). Its shape must be static.
        num_clusters: K, a Python int between 1 and N.
        max_iters: most centre updates per restart (ProPos: 300).
        tolerance: stop when the centres' total shift is at most
            `tolerance * mean per-dimension variance of the rows` (1e-4).
        spherical: cluster by cosine similarity (ProPos's `metric='cosine'`):
            rows are L2-normalised and centres are unit-norm. False: Euclidean.
        seed: Python int; the same seed gives the same result.
        chunk_size: rows scored against the centres at once (memory
            chunk_size x K floats).
        num_inits: restarts from new k-means++ seeds; the best objective is
            kept (torch_clustering's default n_init, 10).

    Returns:
        `KMeansResult`; its assignments are the nearest centres of the
        returned centroids.

    Example:
    >>> features = tf.constant([[1., 0.], [0.9, 0.1], [0., 1.], [0.1, 0.9]])
    >>> result = dataset_kmeans(features, 2, num_inits=1)
    >>> a = result.assignments.numpy()
    >>> bool(a[0] == a[1] and a[2] == a[3] and a[0] != a[2])
    True
    """
    features = _as_features(features, spherical)
    _check_num_clusters(num_clusters, features.shape[0], "num_clusters")
    settings = _settings(max_iters, tolerance, spherical, seed, chunk_size, num_inits)
    return _best_of_restarts(features, int(num_clusters), **settings)


def hierarchical_kmeans(features, cluster_counts, *, max_iters=300, tolerance=1e-4,
                        spherical=True, seed=0, chunk_size=8192, num_inits=10):
    """k-means at several granularities: IFND's "hierarchical semantic definition".

    IFND (Chen et al., ICLR 2022) has no public code. The simplest faithful
    reading of "k-means at several granularities" is taken: every level is
    an independent `dataset_kmeans` of the same rows with the same keywords
    (a reconstruction; the levels need not nest). A nested construction
    (coarse levels by clustering the fine centres) would be cheaper, but it
    clusters centres weighted equally instead of rows and would tie every
    coarse level to the errors of the finest.

    Args:
        features: [N, D] as for `dataset_kmeans`.
        cluster_counts: sequence of K values, e.g. (10, 20, 50).
        the rest: as for `dataset_kmeans`.

    Returns:
        A tuple with one `KMeansResult` per entry of `cluster_counts`, in that
        order; level i equals `dataset_kmeans(features, cluster_counts[i], ...)`.

    Example:
    >>> features = tf.random.stateless_normal([200, 16], seed=[0, 0])
    >>> levels = hierarchical_kmeans(features, (10, 20, 50), num_inits=1)
    >>> [int(level.centroids.shape[0]) for level in levels]
    [10, 20, 50]
    """
    features = _as_features(features, spherical)
    cluster_counts = tuple(cluster_counts)
    if not cluster_counts:
        raise ValueError("cluster_counts is empty; give at least one number of clusters.")
    for level, count in enumerate(cluster_counts):
        _check_num_clusters(count, features.shape[0], f"cluster_counts[{level}]")
    settings = _settings(max_iters, tolerance, spherical, seed, chunk_size, num_inits)
    return tuple(_best_of_restarts(features, int(count), **settings) for count in cluster_counts)


def kmeans_plus_plus(features, num_clusters, *, spherical=True, seed=0, restart=0):
    """The starting centres of restart `restart` of `dataset_kmeans` (seed `seed`).

    Greedy k-means++ (see the module docstring): K rows of the (normalised,
    if spherical) features, [K, D] float32, deterministic in (seed, restart).
    Its random values are `tf.random.stateless_uniform([K, 2 + int(log K)],
    seed=[seed, restart], alg="philox")`: [0, 0] picks the first centre,
    row k the candidates of centre k.
    """
    features = _as_features(features, spherical)
    _check_num_clusters(num_clusters, features.shape[0], "num_clusters")
    return _seed_centroids(features, int(num_clusters), seed, restart)


def lloyd_kmeans(features, initial_centroids, *, max_iters=300, tolerance=1e-4, spherical=True,
                 chunk_size=8192):
    """The iterations of `dataset_kmeans` from given centres (one restart, no seeding).

    Args:
        features: [N, D] as for `dataset_kmeans`.
        initial_centroids: [K, D] starting centres (normalised here if spherical).
        the rest: as for `dataset_kmeans`.

    Returns:
        `KMeansResult`.
    """
    features = _as_features(features, spherical)
    centroids = tf.cast(tf.convert_to_tensor(initial_centroids), tf.float32)
    if centroids.shape.rank != 2 or centroids.shape[1] != features.shape[1]:
        raise ValueError(f"initial_centroids has shape {centroids.shape}; expected "
                         f"[K, {features.shape[1]}], the width of features.")
    _check_num_clusters(centroids.shape[0], features.shape[0], "initial_centroids")
    if spherical:
        centroids = tf.math.l2_normalize(centroids, axis=1)
    settings = _settings(max_iters, tolerance, spherical, 0, chunk_size, 1)
    threshold = _shift_threshold(features, settings["tolerance"])
    return _result(*_lloyd(features, centroids, settings["max_iters"], threshold,
                           spherical=settings["spherical"], chunk_size=settings["chunk_size"]))


# ---- argument checks ---------------------------------------------------------------------------

def _as_features(features, spherical):
    features = tf.convert_to_tensor(features)
    if not (features.dtype.is_floating or features.dtype.is_integer):
        raise ValueError(f"features must be real numbers, got dtype {features.dtype.name}.")
    if features.shape.rank != 2 or None in features.shape.as_list():
        raise ValueError(f"features must be a matrix [N, D] of static shape, "
                         f"got shape {features.shape}.")
    if features.shape.num_elements() == 0:
        raise ValueError(f"features is empty (shape {features.shape}): nothing to cluster.")
    # Clustering maths runs in float32 whatever the training precision (DESIGN.md).
    features = tf.cast(features, tf.float32)
    return tf.math.l2_normalize(features, axis=1) if spherical else features


def _check_num_clusters(num_clusters, num_rows, name):
    if isinstance(num_clusters, bool) or int(num_clusters) != num_clusters:
        raise ValueError(f"{name}={num_clusters!r} must be a whole number of clusters.")
    if num_clusters < 1:
        raise ValueError(f"{name}={num_clusters} must be at least 1.")
    if num_clusters > num_rows:
        raise ValueError(f"{name}={num_clusters} exceeds the {num_rows} rows of features; "
                         f"k-means cannot make more clusters than rows.")


def _settings(max_iters, tolerance, spherical, seed, chunk_size, num_inits):
    """Checked keywords; the ones that change per call become tensors (no retracing)."""
    for name, value in (("max_iters", max_iters), ("chunk_size", chunk_size),
                        ("num_inits", num_inits)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name}={value!r} must be a whole number >= 1.")
    if not tolerance >= 0:
        raise ValueError(f"tolerance={tolerance!r} must be >= 0.")
    return dict(max_iters=tf.constant(int(max_iters), tf.int32),
                tolerance=tf.constant(tolerance, tf.float32), spherical=bool(spherical),
                seed=int(seed), chunk_size=int(chunk_size), num_inits=int(num_inits))


def _seed_centroids(features, num_clusters, seed, restart):
    # The uniform values are drawn outside the XLA kernel: XLA's generator gives
    # other numbers than TensorFlow's Philox kernels (same on CPU and GPU).
    num_candidates = 2 + int(math.log(num_clusters))  # the official n_local_trials
    uniforms = tf.random.stateless_uniform([num_clusters, num_candidates], alg="philox",
                                           seed=tf.constant([seed, restart], tf.int64))
    return _kmeans_plus_plus(features, uniforms)


# ---- restarts ----------------------------------------------------------------------------------

def _best_of_restarts(features, num_clusters, *, max_iters, tolerance, spherical, seed,
                      chunk_size, num_inits):
    threshold = _shift_threshold(features, tolerance)  # the same for every restart
    best, best_objective = None, None
    for restart in range(num_inits):
        centroids = _seed_centroids(features, num_clusters, seed, restart)
        outputs = _lloyd(features, centroids, max_iters, threshold, spherical=spherical,
                         chunk_size=chunk_size)
        objective = tf.reduce_sum(outputs[-1])  # sum of scores: higher is better
        if best is None:
            best, best_objective = outputs, objective
            continue
        # Strictly better only, so ties keep the earlier restart (torch_clustering's
        # `inertia < min_inertia`). Tensor ops, not a Python `if`: no device sync,
        # and the function also works inside a graph.
        better = objective > best_objective
        best = tuple(tf.where(better, new, old) for new, old in zip(outputs, best))
        best_objective = tf.maximum(objective, best_objective)
    return _result(*best)


def _result(assignments, centroids, iterations, scores):
    if tf.executing_eagerly():
        iterations = int(iterations)
    return KMeansResult(assignments=assignments, centroids=centroids, iterations=iterations,
                        scores=scores)


# ---- kernels -----------------------------------------------------------------------------------

@tf.function(jit_compile=True)
def _kmeans_plus_plus(features, uniforms):
    """Greedy k-means++ (torch_clustering `kmeans_plus_plus.py`); [K, D] rows of `features`.

    `uniforms` [K, num_candidates] are all the random values it uses: K x
    candidates values, not an [N]-sized draw per centre (the Gumbel-max trick
    would need one, and generating it cost 100x more than the maths).
    """
    num_rows = features.shape[0]
    num_clusters = uniforms.shape[0]
    squared_norms = tf.reduce_sum(tf.square(features), axis=1)

    def squared_distances(points):
        # [P, N]: |x - p|^2 = |x|^2 - 2 x.p + |p|^2, clamped at 0 against rounding.
        # For unit rows it is 2 (1 - cos): proportional to the official cosine
        # distance, so the draws and the greedy choice are the same.
        products = tf.matmul(points, features, transpose_b=True)
        return tf.maximum(tf.reduce_sum(tf.square(points), axis=1)[:, None]
                          - 2.0 * products + squared_norms[None, :], 0.0)

    first = tf.minimum(tf.cast(uniforms[0, 0] * num_rows, tf.int32), num_rows - 1)
    chosen = tf.tensor_scatter_nd_update(tf.zeros([num_clusters], tf.int32), [[0]], [first])
    closest = squared_distances(tf.gather(features, [first]))[0]  # [N]

    def add_centre(step, chosen, closest):
        # num_candidates independent draws with P(row) proportional to
        # `closest`: the first row whose cumulative sum reaches u * total (a
        # chosen row adds 0 to the sum, so it is not drawn again).
        cumulative = tf.cumsum(closest)
        targets = tf.gather(uniforms, step) * cumulative[-1]
        candidates = tf.minimum(tf.searchsorted(cumulative, targets, out_type=tf.int32),
                                num_rows - 1)
        merged = tf.minimum(closest[None, :], squared_distances(tf.gather(features, candidates)))
        # gather, not merged[best]: a slice at a data-dependent start would
        # make XLA compile again for new values (tests/ops/test_compile_once.py).
        best = tf.argmin(tf.reduce_sum(merged, axis=1), output_type=tf.int32)
        chosen = tf.tensor_scatter_nd_update(chosen, [[step]], tf.gather(candidates, [best]))
        return step + 1, chosen, tf.gather(merged, best)

    _, chosen, _ = tf.while_loop(lambda step, *_: step < num_clusters, add_centre,
                                 (tf.constant(1), chosen, closest))
    return tf.gather(features, chosen)


@tf.function(jit_compile=True)
def _lloyd(features, centroids, max_iters, threshold, spherical, chunk_size):
    """torch_clustering's iteration loop (`kmeans/kmeans.py:85-142`), chunked.

    Returns (assignments [N] int32, centroids [K, D], iterations, scores [N]).
    """
    assignments, scores = assign_in_chunks(features, centroids, spherical, chunk_size)

    def step(iteration, _, centroids, assignments, scores):
        new_centroids = update(features, assignments, centroids, spherical)
        new_assignments, new_scores = assign_in_chunks(features, new_centroids, spherical,
                                                       chunk_size)
        unchanged = tf.reduce_all(tf.equal(new_assignments, assignments))
        converged = unchanged | (_centre_shift(centroids, new_centroids, spherical) <= threshold)
        return iteration + 1, converged, new_centroids, new_assignments, new_scores

    iterations, _, centroids, assignments, scores = tf.while_loop(
        lambda iteration, converged, *_: (iteration < max_iters) & ~converged, step,
        (tf.constant(0), tf.constant(False), centroids, assignments, scores))
    return assignments, centroids, iterations, scores


def _shift_threshold(features, tolerance):
    """`tolerance` x the mean over dimensions of the unbiased variance (torch.var's default)."""
    num_rows = features.shape[0]
    unbiased = num_rows / max(num_rows - 1, 1)
    return tolerance * tf.reduce_mean(tf.math.reduce_variance(features, axis=0)) * unbiased


def _centre_shift(old, new, spherical):
    """Total movement of the centres: sum of cosine distances (spherical) or squared distances."""
    if spherical:
        return tf.reduce_sum(1.0 - tf.reduce_sum(old * new, axis=1))
    return tf.reduce_sum(tf.square(new - old))


def assign_in_chunks(features, centroids, spherical, chunk_size):
    """Nearest centre and similarity of every row, scoring `chunk_size` rows at a time.

    Returns (assignments [N] int32, scores [N] float32): the cosine if
    spherical (unit rows and centres), else minus the squared distance.
    Ties go to the lower centre index.
    """
    num_rows = features.shape[0]
    chunk = min(chunk_size, num_rows)
    num_chunks = -(-num_rows // chunk)
    squared_centroid_norms = tf.reduce_sum(tf.square(centroids), axis=1)

    def nearest(start):
        rows = tf.gather(features, start + tf.range(chunk))
        similarities = tf.matmul(rows, centroids, transpose_b=True)  # [chunk, K]
        if not spherical:
            # argmin |x - c|^2 = argmax (x.c - |c|^2 / 2): |x|^2 is the same for every c.
            similarities -= 0.5 * squared_centroid_norms[None, :]
        best = tf.reduce_max(similarities, axis=1)
        if not spherical:
            best = -tf.maximum(tf.reduce_sum(tf.square(rows), axis=1) - 2.0 * best, 0.0)
        return tf.argmax(similarities, axis=1, output_type=tf.int32), best

    # Every chunk has the same static size: the last one ends at the last row
    # and overlaps its predecessor when `chunk` does not divide N, so no
    # padded copy of the features is made (1.28M x 128 floats would be 655 MB).
    starts = tf.minimum(tf.range(num_chunks) * chunk, num_rows - chunk)
    assignments, scores = tf.map_fn(nearest, starts, fn_output_signature=(tf.int32, tf.float32),
                                    parallel_iterations=1)
    # Of the last chunk only the rows that no earlier chunk covered are kept.
    covered = (num_chunks - 1) * chunk
    first_new = chunk - (num_rows - covered)
    return tuple(tf.concat([tf.reshape(chunks[:-1], [covered]), chunks[-1, first_new:]], axis=0)
                 for chunks in (assignments, scores))

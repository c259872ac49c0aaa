"""Whole-dataset k-means (the E-step of NCC, IFND, CLIM) against a NumPy Lloyd loop.

Every test clusters 103 x 8 rows into 5 clusters in chunks of 16 rows (16
does not divide 103, so the last chunk overlaps the one before), so the XLA
kernels compile for few shapes and the file stays fast.
"""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.ops import dataset_kmeans as module
from keras_ssl.ops.dataset_kmeans import (KMeansResult, assign_in_chunks, dataset_kmeans,
                                          hierarchical_kmeans, kmeans_plus_plus, lloyd_kmeans)

NUM_ROWS, DIM, NUM_CLUSTERS, CHUNK = 103, 8, 5, 16


def normalize(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_lloyd(x, centroids, max_iters, tolerance, spherical):
    """torch_clustering's PyTorchKMeans loop in float64 NumPy, empty clusters kept.

    Assign; then (update the centres to the member means, reassign) until no
    assignment changes, the total centre shift (sum of 1 - cos, or of squared
    distances) is at most tolerance * mean unbiased variance, or max_iters.
    """
    x, c = x.astype(np.float64), centroids.astype(np.float64)
    if spherical:
        x, c = normalize(x), normalize(c)
    threshold = tolerance * x.var(axis=0, ddof=1).mean()

    def nearest(c):
        if spherical:
            similarities = x @ c.T
        else:
            similarities = -((x[:, None, :] - c[None]) ** 2).sum(-1)
        return similarities.argmax(1), similarities.max(1)

    a, s = nearest(c)
    for iteration in range(1, max_iters + 1):
        new = c.copy()
        for k in range(len(c)):
            if np.any(a == k):
                new[k] = x[a == k].mean(0)
                if spherical:
                    new[k] /= np.linalg.norm(new[k])
        new_a, s = nearest(new)
        shift = (1.0 - (c * new).sum(1)).sum() if spherical else ((new - c) ** 2).sum()
        converged = np.array_equal(new_a, a) or shift <= threshold
        c, a = new, new_a
        if converged:
            break
    return a, c, iteration, s


def unstructured(seed=0):
    """Gaussian rows: no clear clusters, so Lloyd needs many iterations."""
    return np.random.default_rng(seed).standard_normal((NUM_ROWS, DIM)).astype("float32")


def blobs(seed=0, spread=0.05):
    """Tight blobs around orthogonal directions; labels 0..4."""
    rng = np.random.default_rng(seed)
    labels = np.arange(NUM_ROWS) % NUM_CLUSTERS
    x = np.eye(DIM)[labels] + spread * rng.standard_normal((NUM_ROWS, DIM))
    return x.astype("float32"), labels


def as_numpy(result):
    return (result.assignments.numpy(), result.centroids.numpy(), result.iterations,
            result.scores.numpy())


def assert_same_result(result, other):
    np.testing.assert_array_equal(result.assignments.numpy(), other.assignments.numpy())
    np.testing.assert_allclose(result.centroids.numpy(), other.centroids.numpy(), atol=1e-6)
    np.testing.assert_allclose(result.scores.numpy(), other.scores.numpy(), atol=1e-6)
    assert result.iterations == other.iterations


@pytest.fixture(scope="module")
def start():
    """Rows, and start centres (the first rows, as CLD) that need many iterations."""
    x = unstructured(seed=2)
    return x, normalize(x[:NUM_CLUSTERS])


# ---- Lloyd iterations --------------------------------------------------------------------------

@pytest.mark.parametrize("spherical", [True, False])
def test_matches_numpy_lloyd_from_the_same_start(start, spherical):
    x, centroids = start
    result = lloyd_kmeans(x, centroids, spherical=spherical, chunk_size=CHUNK)
    assert isinstance(result, KMeansResult)
    a, c, iterations, s = reference_lloyd(x, centroids, 300, 1e-4, spherical)
    np.testing.assert_array_equal(result.assignments.numpy(), a)
    np.testing.assert_allclose(result.centroids.numpy(), c, atol=1e-5)
    np.testing.assert_allclose(result.scores.numpy(), s, atol=1e-4)
    assert result.iterations == iterations
    assert 5 <= result.iterations < 300  # it iterated, and stopped on its own
    assert result.assignments.dtype == tf.int32 and result.centroids.dtype == tf.float32
    if spherical:
        np.testing.assert_allclose(np.linalg.norm(result.centroids.numpy(), axis=1), 1.0,
                                   atol=1e-5)


def test_tolerance_stop_matches_the_reference_and_is_relative(start):
    x, centroids = start
    iterations = {tolerance: lloyd_kmeans(x, centroids, tolerance=tolerance,
                                          chunk_size=CHUNK).iterations
                  for tolerance in (0.0, 0.5, 1e9)}
    # 0: only "no assignment changed" stops; a huge tolerance stops after one
    # update; in between the shift rule decides, as in the reference.
    assert iterations[1e9] == 1
    assert 1 < iterations[0.5] < iterations[0.0] < 300
    assert iterations[0.5] == reference_lloyd(x, centroids, 300, 0.5, True)[2]
    # The tolerance is relative to the rows' variance: scaling the rows
    # (Euclidean) scales both the shifts and the threshold alike.
    scaled = [lloyd_kmeans(x * factor, centroids * factor, tolerance=0.05, spherical=False,
                           chunk_size=CHUNK).iterations for factor in (1.0, 100.0)]
    assert scaled[0] == scaled[1]
    capped = lloyd_kmeans(x, centroids, max_iters=2, chunk_size=CHUNK)
    assert capped.iterations == 2
    np.testing.assert_array_equal(capped.assignments.numpy(),
                                  reference_lloyd(x, centroids, 2, 1e-4, True)[0])


def test_strict_convergence_is_a_fixed_point(start):
    x, centroids = start
    result = lloyd_kmeans(x, centroids, tolerance=0.0, chunk_size=CHUNK)
    a, c = result.assignments.numpy(), result.centroids.numpy()
    rows = normalize(x.astype(np.float64))
    np.testing.assert_array_equal(a, (rows @ c.T).argmax(1))
    np.testing.assert_allclose(result.scores.numpy(), (rows @ c.T).max(1), atol=1e-5)
    means = np.stack([normalize(rows[a == k].mean(0, keepdims=True))[0]
                      for k in range(NUM_CLUSTERS)])
    np.testing.assert_allclose(c, means, atol=1e-5)


def test_empty_cluster_keeps_its_centre():
    # Rows in the positive orthant; the fifth start centre points away from all
    # of them (negative cosine to every row), so it never wins a row.
    x = np.abs(unstructured(seed=1))
    away = -np.ones((1, DIM), "float32") / np.sqrt(DIM)
    centroids = np.concatenate([normalize(x[:4]), away])
    result = lloyd_kmeans(x, centroids, chunk_size=CHUNK)
    assert 4 not in result.assignments.numpy()
    # torch_clustering would make it the zero vector (counts + 1e-6); here it stays.
    np.testing.assert_allclose(result.centroids.numpy()[4], away[0], atol=1e-6)
    assert np.all(np.isfinite(result.centroids.numpy()))
    a, c, iterations, _ = reference_lloyd(x, centroids, 300, 1e-4, True)
    np.testing.assert_array_equal(result.assignments.numpy(), a)
    np.testing.assert_allclose(result.centroids.numpy(), c, atol=1e-5)
    assert result.iterations == iterations


# ---- chunks ------------------------------------------------------------------------------------

@pytest.mark.parametrize("spherical", [True, False])
def test_chunked_assignment_equals_brute_force(spherical):
    rng = np.random.default_rng(2)
    x = unstructured(seed=2)
    centroids = rng.standard_normal((7, DIM)).astype("float32")
    if spherical:
        x, centroids = normalize(x), normalize(centroids)
    if spherical:
        similarities = x.astype(np.float64) @ centroids.T
    else:
        similarities = -((x[:, None, :].astype(np.float64) - centroids[None]) ** 2).sum(-1)
    for chunk_size in (1, 7, NUM_ROWS, 500):  # one row, overlapping last chunk, whole, > N
        assignments, scores = assign_in_chunks(tf.constant(x), tf.constant(centroids), spherical,
                                               chunk_size)
        np.testing.assert_array_equal(assignments.numpy(), similarities.argmax(1))
        np.testing.assert_allclose(scores.numpy(), similarities.max(1), atol=1e-4)


def test_chunked_clustering_equals_unchunked(start):
    x, _ = start
    chunked = dataset_kmeans(x, NUM_CLUSTERS, seed=3, chunk_size=CHUNK, num_inits=2)
    whole = dataset_kmeans(x, NUM_CLUSTERS, seed=3, chunk_size=8192, num_inits=2)
    np.testing.assert_array_equal(chunked.assignments.numpy(), whole.assignments.numpy())
    np.testing.assert_allclose(chunked.centroids.numpy(), whole.centroids.numpy(), atol=1e-5)
    assert chunked.iterations == whole.iterations


# ---- seeding and restarts ----------------------------------------------------------------------

def reference_kmeans_plus_plus(x, uniforms):
    """Row indices of torch_clustering's greedy k-means++ (cosine), given its uniform values.

    The first centre is row floor(u * N); each further one is the best of the
    candidates found by `searchsorted(cumsum(distance), u * total)`, the one
    leaving the smallest total distance (distance = 1 - cos to the closest centre).
    """
    x = normalize(x.astype(np.float64))
    num_rows = len(x)
    chosen = [min(int(uniforms[0, 0] * num_rows), num_rows - 1)]
    closest = 1.0 - x @ x[chosen[0]]
    for step in range(1, len(uniforms)):
        cumulative = np.cumsum(closest)
        candidates = np.minimum(np.searchsorted(cumulative, uniforms[step] * cumulative[-1]),
                                num_rows - 1)
        merged = np.minimum(closest[None], 1.0 - x[candidates] @ x.T)
        best = merged.sum(1).argmin()
        chosen.append(candidates[best])
        closest = merged[best]
    return np.array(chosen)


@pytest.mark.parametrize("restart", [0, 1])
def test_kmeans_plus_plus_matches_the_greedy_reference(start, restart):
    x = start[0]
    num_candidates = 2 + int(np.log(NUM_CLUSTERS))
    uniforms = tf.random.stateless_uniform([NUM_CLUSTERS, num_candidates], alg="philox",
                                           seed=tf.constant([3, restart], tf.int64)).numpy()
    rows = reference_kmeans_plus_plus(x, uniforms)
    assert len(set(rows.tolist())) == NUM_CLUSTERS
    centroids = kmeans_plus_plus(x, NUM_CLUSTERS, seed=3, restart=restart).numpy()
    np.testing.assert_allclose(centroids, normalize(x)[rows], atol=1e-6)


def test_kmeans_plus_plus_picks_distinct_rows_one_per_blob():
    x, labels = blobs(seed=4, spread=0.01)
    centroids = kmeans_plus_plus(x, NUM_CLUSTERS, seed=0).numpy()
    distances = ((normalize(x)[None] - centroids[:, None]) ** 2).sum(-1)  # [K, N]
    rows = distances.argmin(1)
    np.testing.assert_allclose(distances.min(1), 0.0, atol=1e-10)  # rows of the data
    assert sorted(labels[rows]) == list(range(NUM_CLUSTERS))  # one in each blob


def test_same_seed_same_result_and_restarts_differ(start):
    x, _ = start
    first = kmeans_plus_plus(x, NUM_CLUSTERS, seed=3).numpy()
    np.testing.assert_array_equal(kmeans_plus_plus(x, NUM_CLUSTERS, seed=3).numpy(), first)
    assert not np.array_equal(kmeans_plus_plus(x, NUM_CLUSTERS, seed=4).numpy(), first)
    assert not np.array_equal(kmeans_plus_plus(x, NUM_CLUSTERS, seed=3, restart=1).numpy(),
                              first)
    once = dataset_kmeans(x, NUM_CLUSTERS, seed=3, chunk_size=CHUNK, num_inits=3)
    again = dataset_kmeans(tf.constant(x), NUM_CLUSTERS, seed=3, chunk_size=CHUNK, num_inits=3)
    for value, other in zip(as_numpy(once), as_numpy(again)):
        np.testing.assert_array_equal(value, other)


def test_keeps_the_restart_with_the_best_objective(start):
    x, _ = start
    runs = [lloyd_kmeans(x, kmeans_plus_plus(x, NUM_CLUSTERS, seed=0, restart=restart),
                         chunk_size=CHUNK) for restart in range(3)]
    objectives = [float(tf.reduce_sum(run.scores)) for run in runs]
    # Seed 0's best restart is the middle one: keeping the first or the last
    # run instead of the best would fail below.
    assert int(np.argmax(objectives)) == 1 and len(set(np.round(objectives, 4))) == 3
    best = dataset_kmeans(x, NUM_CLUSTERS, seed=0, chunk_size=CHUNK, num_inits=3)
    assert_same_result(best, runs[1])


def test_recovers_well_separated_blobs():
    x, labels = blobs(seed=5)
    result = dataset_kmeans(x, NUM_CLUSTERS, seed=0, chunk_size=CHUNK)
    a = result.assignments.numpy()
    # The same partition up to relabelling: a one-to-one map of labels.
    pairs = set(zip(labels.tolist(), a.tolist()))
    assert len(pairs) == NUM_CLUSTERS and len({k for _, k in pairs}) == NUM_CLUSTERS
    assert result.iterations <= 3  # converged long before max_iters
    similarities = normalize(x) @ result.centroids.numpy().T
    np.testing.assert_array_equal(a, similarities.argmax(1))
    np.testing.assert_allclose(result.scores.numpy(), similarities.max(1), atol=1e-5)
    assert result.scores.numpy().min() > 0.9


def test_compiles_once_for_new_values_of_the_same_shape():
    x = unstructured(seed=6)
    dataset_kmeans(x, NUM_CLUSTERS, seed=1, chunk_size=CHUNK, num_inits=1)
    traces = (module._lloyd.experimental_get_tracing_count(),
              module._kmeans_plus_plus.experimental_get_tracing_count())
    dataset_kmeans(unstructured(seed=7), NUM_CLUSTERS, seed=2, chunk_size=CHUNK, num_inits=2,
                   tolerance=1e-3, max_iters=50)
    assert (module._lloyd.experimental_get_tracing_count(),
            module._kmeans_plus_plus.experimental_get_tracing_count()) == traces


# ---- levels, dtypes, arguments -----------------------------------------------------------------

def test_hierarchical_levels_are_independent_clusterings(start):
    x, _ = start
    levels = hierarchical_kmeans(x, (2, NUM_CLUSTERS), seed=4, chunk_size=CHUNK, num_inits=2)
    assert len(levels) == 2
    for level, count in zip(levels, (2, NUM_CLUSTERS)):
        assert level.centroids.shape == (count, DIM)
        assert level.assignments.shape == (NUM_ROWS,) and level.scores.shape == (NUM_ROWS,)
        assert set(level.assignments.numpy()) <= set(range(count))
        assert_same_result(level, dataset_kmeans(x, count, seed=4, chunk_size=CHUNK,
                                                 num_inits=2))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_input_is_clustered_in_float32(start, dtype):
    x = tf.cast(start[0], dtype)
    result = dataset_kmeans(x, NUM_CLUSTERS, seed=3, chunk_size=CHUNK, num_inits=1)
    expected = dataset_kmeans(tf.cast(x, tf.float32).numpy(), NUM_CLUSTERS, seed=3,
                              chunk_size=CHUNK, num_inits=1)
    assert result.centroids.dtype == tf.float32 and result.scores.dtype == tf.float32
    assert_same_result(result, expected)


def test_rejects_bad_arguments():
    x = unstructured()
    for features, match in ((np.zeros((0, DIM), "float32"), "features is empty"),
                            (np.zeros((4, 0), "float32"), "features is empty"),
                            (np.zeros(DIM, "float32"), "features must be a matrix")):
        with pytest.raises(ValueError, match=match):
            dataset_kmeans(features, 1)
    for num_clusters, match in ((0, "at least 1"), (NUM_ROWS + 1, "exceeds the 103 rows"),
                                (2.5, "whole number")):
        with pytest.raises(ValueError, match=f"num_clusters={num_clusters}.*{match}"):
            dataset_kmeans(x, num_clusters)
    with pytest.raises(ValueError, match=r"cluster_counts\[1\]=200"):
        hierarchical_kmeans(x, (2, 200))
    with pytest.raises(ValueError, match="cluster_counts is empty"):
        hierarchical_kmeans(x, ())
    for keyword, value in (("max_iters", 0), ("chunk_size", 0), ("num_inits", 0),
                           ("tolerance", -1.0)):
        with pytest.raises(ValueError, match=keyword):
            dataset_kmeans(x, 2, **{keyword: value})

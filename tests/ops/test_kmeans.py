"""k-means against a NumPy Lloyd reference and its invariants."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.ops import kmeans
from keras_ssl.ops.kmeans import assign


def reference_kmeans(x, num_clusters, num_iters, spherical=False, centroids=None):
    """Plain Lloyd: assign, then mean; an empty cluster keeps its centroid."""
    x = x.astype(np.float64)
    c = x[:num_clusters].copy() if centroids is None else centroids.astype(np.float64)
    if spherical:
        c /= np.linalg.norm(c, axis=1, keepdims=True)
    for _ in range(num_iters):
        if spherical:
            a = np.argmax(x @ c.T, axis=1)
        else:
            a = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        for k in range(num_clusters):
            if np.any(a == k):
                c[k] = x[a == k].mean(0)
                if spherical:
                    c[k] /= np.linalg.norm(c[k])
    return a, c


def blobs(n=48, d=6, centres=4, seed=0):
    rng = np.random.default_rng(seed)
    means = 3.0 * rng.standard_normal((centres, d))
    return (means[rng.integers(centres, size=n)] + rng.standard_normal((n, d))).astype("float32")


@pytest.mark.parametrize("spherical", [False, True])
def test_matches_numpy_lloyd(spherical):
    x = blobs()
    assignments, centroids = kmeans(tf.constant(x), 5, 6, spherical=spherical)
    expected_a, expected_c = reference_kmeans(x, 5, 6, spherical=spherical)
    np.testing.assert_array_equal(assignments.numpy(), expected_a)
    np.testing.assert_allclose(centroids.numpy(), expected_c, atol=1e-5)
    assert assignments.dtype == tf.int32 and centroids.shape == (5, 6)


def objective(x, assignments, centroids):
    return float(((x - centroids[assignments]) ** 2).sum())


def test_objective_never_increases():
    x = blobs(n=64, seed=1)
    values = [objective(x, *(t.numpy() for t in kmeans(tf.constant(x), 6, iters)))
              for iters in range(1, 9)]
    assert all(b <= a + 1e-4 for a, b in zip(values, values[1:])), values
    assert values[-1] < values[0]  # the iterations did something


def test_empty_cluster_keeps_its_centroid():
    # Rows 0 and 1 are identical and apart from the rest, so clusters 0 and 1
    # stay equal and ties go to cluster 0: cluster 1 never gets a member.
    x = np.array([[9, 9], [9, 9], [0, 0], [0, 1], [1, 0], [1, 1]], "float32")
    assignments, centroids = kmeans(tf.constant(x), 3, 4)
    np.testing.assert_array_equal(assignments.numpy(), [0, 0, 2, 2, 2, 2])
    assert np.all(np.isfinite(centroids.numpy()))
    np.testing.assert_allclose(centroids.numpy()[1], [9, 9])


def test_more_clusters_than_rows_stays_finite():
    x = blobs(n=4)
    assignments, centroids = kmeans(tf.constant(x), 6, 3, spherical=True)
    assert np.all(np.isfinite(centroids.numpy()))
    assert assignments.numpy().max() < 6


def test_spherical_centroids_have_unit_norm():
    _, centroids = kmeans(tf.constant(blobs(seed=2)), 5, 4, spherical=True)
    np.testing.assert_allclose(np.linalg.norm(centroids.numpy(), axis=1), 1.0, atol=1e-5)


def test_gradients_reach_features_through_centroids():
    x = tf.constant(blobs(seed=3))
    weights = np.random.default_rng(0).standard_normal((5, 6)).astype("float32")
    with tf.GradientTape() as tape:
        tape.watch(x)
        assignments, centroids = kmeans(x, 5, 4)
        loss = tf.reduce_sum(centroids * weights)
    gradient = tape.gradient(loss, x).numpy()
    # d/dx_i sum_k w_k . mean_k = w_{a_i} / |cluster a_i|.
    a = assignments.numpy()
    counts = np.bincount(a, minlength=5)
    np.testing.assert_allclose(gradient, weights[a] / counts[a][:, None], atol=1e-6)


@pytest.mark.parametrize("init", ["kmeans++", "random"])
def test_seeded_inits_are_deterministic_rows_of_the_data(init):
    x = blobs(seed=4)
    first = kmeans(tf.constant(x), 4, 1, init=init, seed=7)
    again = kmeans(tf.constant(x), 4, 1, init=init, seed=7)
    other = kmeans(tf.constant(x), 4, 1, init=init, seed=8)
    np.testing.assert_array_equal(first[0].numpy(), again[0].numpy())
    np.testing.assert_array_equal(first[1].numpy(), again[1].numpy())
    assert not np.array_equal(first[1].numpy(), other[1].numpy())


def test_kmeans_plus_plus_spreads_its_seeds():
    # Four tight, far-apart blobs: D^2 seeding picks one seed in each, so one
    # Lloyd step already recovers them.
    rng = np.random.default_rng(5)
    means = np.array([[0, 0], [50, 0], [0, 50], [50, 50]], "float32")
    labels = np.repeat(np.arange(4), 10)
    x = means[labels] + 0.1 * rng.standard_normal((40, 2)).astype("float32")
    assignments, _ = kmeans(tf.constant(x), 4, 1, init="kmeans++", seed=0)
    a = assignments.numpy()
    assert len(set(a)) == 4
    assert all(len(set(a[labels == k])) == 1 for k in range(4))


def test_mixed_precision_input_returns_its_dtype():
    x = blobs(seed=6)
    _, centroids = kmeans(tf.constant(x, tf.float16), 5, 3)
    assert centroids.dtype == tf.float16
    _, expected = reference_kmeans(x.astype(np.float16).astype(np.float32), 5, 3)
    np.testing.assert_allclose(centroids.numpy(), expected, atol=1e-2)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="init"):
        kmeans(tf.zeros([4, 2]), 2, 1, init="forgy")
    with pytest.raises(ValueError, match="num_iters"):
        kmeans(tf.zeros([4, 2]), 2, 0)


@pytest.mark.parametrize("spherical", [False, True])
def test_blockwise_assignment_equals_the_whole_score_matrix(spherical):
    # 103 rows in blocks of 10 (the last one padded): the path a whole
    # memory bank takes, here with a block small enough to test.
    rng = np.random.default_rng(3)
    features = tf.constant(rng.standard_normal((103, 5)), tf.float32)
    centroids = tf.constant(rng.standard_normal((7, 5)), tf.float32)
    whole = assign(features, centroids, spherical)
    blockwise = tf.function(jit_compile=True)(
        lambda f, c: assign(f, c, spherical, max_scores=70))(features, centroids)
    np.testing.assert_array_equal(blockwise.numpy(), whole.numpy())
    scores = features.numpy() @ centroids.numpy().T
    if not spherical:
        scores -= 0.5 * (centroids.numpy() ** 2).sum(1)
    np.testing.assert_array_equal(whole.numpy(), scores.argmax(1))

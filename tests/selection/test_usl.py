"""USL against NumPy copies of the official rules (TonyLianLong/UnsupervisedSelectiveLabeling)."""

import numpy as np
import pytest

from keras_ssl import selection
from keras_ssl.data import read_label_indices, write_label_indices


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _blobs(num_blobs=5, per_blob=20, dim=8, seed=0):
    """Unit-norm features in well-separated blobs; returns (features, blob of each row)."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(num_blobs, dim)) + 3.0 * np.eye(num_blobs, dim))
    noise = 0.02 * rng.normal(size=(num_blobs * per_blob, dim))
    rows = np.repeat(centres, per_blob, axis=0) + noise
    order = rng.permutation(len(rows))
    return _unit(rows[order]).astype(np.float32), np.repeat(np.arange(num_blobs), per_blob)[order]


def _official_mean_knn_distance(x, k):
    """usl-cifar.py:47-50 with partitioned_kNN: squared L2 to the k nearest, self included."""
    squared = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.sort(squared, axis=1)[:, :k].mean(axis=1)


def _official_selection_with_reg(data, neighbors_dist, cluster_labels, num_centroids,
                                 final_sample_num, iters, w, momentum, horizon_dist, alpha):
    """nn_utils_cifar.py:31-86, get_selection_with_reg, in NumPy (float64).

    Also returns the smallest margin between a cluster's best and second-best
    score over all rounds: a comparison with a float32 port is only
    meaningful when no round is a near-tie.
    """
    selection_regularizer = np.zeros_like(neighbors_dist)
    margin = np.inf
    mask = np.eye(final_sample_num)[cluster_labels]  # F.one_hot(cluster_labels, final_sample_num)
    for _ in range(iters):
        selected_inds = []
        for cls_ind in range(num_centroids):
            if len(selected_inds) == final_sample_num:
                break
            match_arr = cluster_labels == cls_ind
            match = np.where(match_arr)[0]
            if len(match) == 0:
                continue
            scores = 1 / neighbors_dist[match_arr] - w * selection_regularizer[match_arr]
            selected_inds.append(match[scores.argmax()])
            top_two = np.sort(scores)[-2:]
            margin = min(margin, top_two[-1] - top_two[0])
        selected_inds = np.array(selected_inds)
        new = ((data[:, None, :] - data[selected_inds][None, :, :]) ** 2).sum(-1)
        new = (1 - mask) * new + mask * 1e10
        assert not np.any(new == 0)
        if horizon_dist is not None:
            new[new >= horizon_dist] = 1e10
        new = (1 / new ** alpha).sum(axis=1)
        selection_regularizer = selection_regularizer * momentum + new * (1 - momentum)
    return selected_inds, margin


def test_density_matches_the_official_knn_with_self_included():
    x = np.random.default_rng(1).normal(size=(60, 5)).astype(np.float32)
    got = selection.mean_knn_distance(x, k=7)
    np.testing.assert_allclose(got, _official_mean_knn_distance(x.astype(np.float64), 7),
                               rtol=1e-5, atol=1e-5)
    distances, indices = selection.knn_distances(x, k=7)
    np.testing.assert_array_equal(indices[:, 0], np.arange(60))  # self is the first neighbour
    assert np.all(distances[:, 0] < 1e-5) and np.all(np.diff(distances, axis=1) >= 0)
    with pytest.raises(ValueError, match="between 1 and the number of examples 60"):
        selection.mean_knn_distance(x, k=61)


def test_regularizer_update_matches_the_official_rule():
    rng = np.random.default_rng(2)
    x = _unit(rng.normal(size=(40, 6)))
    clusters = rng.permutation(np.arange(40) % 4)
    picks = np.array([np.flatnonzero(clusters == c)[0] for c in range(4)])
    previous = rng.uniform(size=40)
    settings = ((4.0, 0.5, 0.9), (1.0, 1.0, 0.9), (0.8, 0.5, 0.5), (None, 2.0, 0.0))
    for horizon, alpha, momentum in settings:
        got = selection.regularizer_update(x.astype(np.float32), clusters, picks, np.arange(4),
                                           previous.astype(np.float32), momentum=momentum,
                                           horizon=horizon, alpha=alpha)
        new = ((x[:, None] - x[picks][None]) ** 2).sum(-1)
        mask = np.eye(4)[clusters]
        new = (1 - mask) * new + mask * 1e10
        if horizon is not None:
            new[new >= horizon] = 1e10
        want = previous * momentum + (1 / new ** alpha).sum(1) * (1 - momentum)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("settings", ["cifar10", "cifar100"])
def test_regularized_picks_match_the_official_selection(settings):
    x, _ = _blobs(num_blobs=6, per_blob=15, seed=3)
    rng = np.random.default_rng(5)
    # Clusters that straddle the blobs, so the regulariser has neighbours to push from.
    clusters = rng.permutation(np.arange(len(x)) % 6)
    distances = _official_mean_knn_distance(x.astype(np.float64), 10)
    official = selection.OFFICIAL_SETTINGS[settings]
    kwargs = dict(iters=official["reg_iters"], weight=official["reg_weight"],
                  momentum=official["reg_momentum"], horizon=official["reg_horizon"],
                  alpha=official["reg_alpha"])
    want, margin = _official_selection_with_reg(
        x.astype(np.float64), distances, clusters, 6, 6, iters=kwargs["iters"],
        w=kwargs["weight"], momentum=kwargs["momentum"], horizon_dist=kwargs["horizon"],
        alpha=kwargs["alpha"])
    assert margin > 0.05  # no near-tie that float32 rounding could flip
    got = selection.regularized_picks(x, distances.astype(np.float32), clusters, 6, 6, **kwargs)
    np.testing.assert_array_equal(got, want)
    # The regulariser changed something: the density alone picks differently.
    density_only = selection.regularized_picks(x, distances.astype(np.float32), clusters, 6, 6,
                                               iters=1)
    np.testing.assert_array_equal(
        density_only, [np.flatnonzero(clusters == c)[np.argmin(distances[clusters == c])]
                       for c in range(6)])


def test_pick_per_cluster_skips_empty_clusters_and_breaks_ties_low():
    scores = np.array([1.0, 3.0, 3.0, 2.0, 5.0], np.float32)
    clusters = np.array([0, 0, 0, 3, 3])
    picks, pick_clusters = selection.pick_per_cluster(scores, clusters, num_clusters=4, budget=4)
    assert picks.tolist() == [1, 4] and pick_clusters.tolist() == [0, 3]
    picks, _ = selection.pick_per_cluster(scores, clusters, num_clusters=4, budget=1)
    assert picks.tolist() == [1]
    with pytest.raises(ValueError, match="Only 2 of the 4 clusters"):
        selection.regularized_picks(np.eye(5, dtype=np.float32), np.ones(5, np.float32),
                                    clusters, 4, 3)


def test_select_usl_exact_distinct_deterministic_and_one_per_blob(tmp_path):
    x, blobs = _blobs(num_blobs=5, per_blob=20, seed=5)
    first = selection.select_usl(x, budget=5, knn_k=10, seed=1)
    again = selection.select_usl(x, budget=5, knn_k=10, seed=1)
    np.testing.assert_array_equal(first.indices, again.indices)
    assert len(first.indices) == 5 and len(set(first.indices.tolist())) == 5
    # One pick in every k-means cluster.
    assert sorted(first.assignments[first.indices].tolist()) == [0, 1, 2, 3, 4]
    assert first.assignments.shape == (100,) and first.mean_distances.shape == (100,)
    # Well-separated blobs: with k-means++ seeding k-means finds them, and every
    # blob gets one pick, for any seed. (The official random rows often start
    # two centres in one blob, which Lloyd cannot undo.)
    for seed in (1, 2, 3):
        spread = selection.select_usl(x, budget=5, knn_k=10, kmeans_init="kmeans++", seed=seed)
        assert sorted(blobs[spread.indices].tolist()) == [0, 1, 2, 3, 4]
    # A bigger budget than blobs: still exactly `budget` distinct picks.
    many = selection.select_usl(x, budget=12, knn_k=10, seed=2)
    assert len(set(many.indices.tolist())) == 12
    # The label-budget writer and reader take them as they are.
    path = tmp_path / "usl.txt"
    write_label_indices(path, first.indices)
    np.testing.assert_array_equal(read_label_indices(path, num_examples=100), first.indices)


def test_select_usl_rejects_bad_budgets():
    x, _ = _blobs(num_blobs=2, per_blob=5)
    with pytest.raises(ValueError, match="budget=11"):
        selection.select_usl(x, budget=11, knn_k=3)
    with pytest.raises(ValueError, match="at least the budget"):
        selection.select_usl(x, budget=4, num_clusters=3, knn_k=3)

"""ProPos' prototype scattering loss against a NumPy copy of the official rule."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.losses.prototype_scattering import (cluster_centres, cluster_presence,
                                                   prototype_scattering_loss)


def _official_cluster_loss(queries, keys, labels, num_clusters, temperature):
    """Hzzone/ProPos byol_wrapper.py `compute_centers` + `compute_cluster_loss`, in NumPy.

    Line by line: one-hot weights L1-normalised per cluster, centres of the
    normalised rows, normalised; d_q = centre similarities / t with the
    positives on the diagonal; columns of absent clusters set to -10; loss
    -pos + logsumexp([pos, negatives]); absent rows zeroed; sum over the
    number of present clusters.
    """
    def normalize(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def centers(x):
        weight = np.zeros((num_clusters, len(x)))
        weight[labels, np.arange(len(x))] = 1
        weight /= np.maximum(np.abs(weight).sum(axis=1, keepdims=True), 1e-12)
        return normalize(weight @ x)

    q_centers = centers(normalize(queries))
    k_centers = centers(normalize(keys))
    d_q = q_centers @ q_centers.T / temperature
    d_q[np.arange(num_clusters), np.arange(num_clusters)] = (
        (q_centers * k_centers).sum(axis=1) / temperature)
    zero_classes = np.setdiff1d(np.arange(num_clusters), np.unique(labels))
    d_q[:, zero_classes] = -10
    pos = np.diag(d_q)
    neg = d_q[~np.eye(num_clusters, dtype=bool)].reshape(num_clusters, num_clusters - 1)
    logits = np.concatenate([pos[:, None], neg], axis=1)
    top = logits.max(axis=1)
    loss = -pos + top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
    loss[zero_classes] = 0.0
    return loss.sum() / (num_clusters - len(zero_classes))


def _problem(seed, rows=12, dim=5, present=(0, 2, 3, 5)):
    rng = np.random.default_rng(seed)
    queries = rng.normal(size=(rows, dim)).astype("float32")
    keys = rng.normal(size=(rows, dim)).astype("float32")
    labels = rng.choice(present, size=rows).astype("int32")
    labels[:len(present)] = present  # every listed cluster has a row
    return queries, keys, labels


@pytest.mark.parametrize("seed, temperature, present", [
    (0, 0.5, (0, 2, 3, 5)),       # clusters 1 and 4 absent
    (1, 0.1, (0, 1, 2, 3, 4, 5)),  # all present
    (2, 0.5, (4,)),               # one present cluster
])
def test_loss_matches_the_official_rule(seed, temperature, present):
    queries, keys, labels = _problem(seed, present=present)
    loss = prototype_scattering_loss(queries, keys, labels, num_clusters=6,
                                     temperature=temperature)
    expected = _official_cluster_loss(queries.astype(np.float64), keys.astype(np.float64),
                                      labels, 6, temperature)
    # One present cluster: loss ~ 5 exp(-10 - pos), near float32 resolution.
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-7)


def test_rows_without_a_label_count_for_no_cluster():
    queries, keys, labels = _problem(3)
    unlabeled = labels.copy()
    unlabeled[[1, 7]] = -1
    kept = np.flatnonzero(unlabeled >= 0)
    np.testing.assert_allclose(
        prototype_scattering_loss(queries, keys, unlabeled, num_clusters=6),
        _official_cluster_loss(queries[kept], keys[kept], labels[kept], 6, 0.5), rtol=1e-5)
    np.testing.assert_array_equal(cluster_presence(unlabeled, 6),
                                  np.isin(np.arange(6), unlabeled[kept]))


def test_no_present_cluster_gives_zero():
    queries, keys, _ = _problem(4)
    labels = np.full(len(queries), -1, np.int32)
    assert float(prototype_scattering_loss(queries, keys, labels, num_clusters=6)) == 0.0


def test_invariant_to_row_scale_and_to_renaming_the_clusters():
    queries, keys, labels = _problem(5)
    loss = prototype_scattering_loss(queries, keys, labels, num_clusters=6)
    scales = np.random.default_rng(6).uniform(0.1, 10.0, size=(len(queries), 1))
    renamed = np.array([3, 5, 0, 1, 2, 4], np.int32)[labels]
    np.testing.assert_allclose(
        prototype_scattering_loss(queries * scales.astype("float32"), keys, renamed,
                                  num_clusters=6), loss, rtol=1e-5)


def test_centres_are_normalised_means_of_normalised_rows_and_zero_when_empty():
    queries, _, labels = _problem(7)
    centres = cluster_centres(queries, labels, 6).numpy()
    unit = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    for cluster in range(6):
        members = unit[labels == cluster]
        if len(members):
            mean = members.mean(axis=0)
            np.testing.assert_allclose(centres[cluster], mean / np.linalg.norm(mean),
                                       rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(centres[cluster], 0.0)


def test_gradient_reaches_the_queries_and_never_the_keys():
    queries, keys, labels = (tf.constant(t) for t in _problem(8))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([queries, keys])
        loss = prototype_scattering_loss(queries, keys, labels, num_clusters=6)
    query_gradient = tape.gradient(loss, queries).numpy()
    assert tape.gradient(loss, keys) is None
    assert np.isfinite(query_gradient).all() and np.abs(query_gradient).max() > 1e-4
    # Finite differences on one query row: the analytic gradient is right.
    step = np.zeros(queries.shape, np.float32)
    step[2, 1] = 1e-2
    moved = [float(prototype_scattering_loss(queries + sign * step, keys, labels,
                                             num_clusters=6)) for sign in (1.0, -1.0)]
    np.testing.assert_allclose((moved[0] - moved[1]) / 2e-2, query_gradient[2, 1],
                               rtol=2e-2, atol=1e-4)

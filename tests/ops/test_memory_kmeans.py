"""InterCLR's memory-bank k-means against a NumPy reference of one update.

The kernel is `keras_ssl.ops.memory_kmeans_step`; the state that calls it is
`keras_ssl.layers.ClusteredBank` (the memory family's rules, shared with the
other banks, are tested in tests/core/test_memory.py).
"""

import numpy as np
import tensorflow as tf

from keras_ssl.layers import ClusteredBank
from keras_ssl.ops import memory_kmeans_step

NUM_ROWS, DIM, NUM_CLUSTERS, MIN_SIZE = 240, 6, 6, 15
# Rows of one write in every test but the second step of the first: the
# jitted kernel compiles once per batch size (about 3 s each).
BATCH = 60


def normalize(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered_rows(seed=0, n=NUM_ROWS):
    rng = np.random.default_rng(seed)
    means = 3.0 * rng.standard_normal((NUM_CLUSTERS, DIM))
    labels = np.arange(n) % NUM_CLUSTERS
    return normalize(means[labels] + rng.standard_normal((n, DIM))).astype("float32")


def reference_split(bank, members, min_size):
    """2-means from (first member, farthest member); median split if a half is too small."""
    rows = np.flatnonzero(members)
    a = bank[rows[0]]
    b = bank[rows[np.argmax(((bank[rows] - a) ** 2).sum(1))]]
    for _ in range(20):
        to_b = ((bank[rows] - b) ** 2).sum(1) < ((bank[rows] - a) ** 2).sum(1)
        a = bank[rows[~to_b]].mean(0) if np.any(~to_b) else a
        b = bank[rows[to_b]].mean(0) if np.any(to_b) else b
    to_b = ((bank[rows] - b) ** 2).sum(1) < ((bank[rows] - a) ** 2).sum(1)
    if min(to_b.sum(), len(rows) - to_b.sum()) < min_size:
        order = np.argsort(-(bank[rows] @ (b - a)), kind="stable")
        to_b = np.zeros(len(rows), bool)
        to_b[order[:len(rows) // 2]] = True
    return rows[to_b]


def reference_step(bank, labels, centroids, indices, features, recompute, min_size):
    """One InterCLR update (rows replaced, momentum 0.0) in NumPy, as the official memory."""
    bank, labels, centroids = bank.copy(), labels.copy(), centroids.copy()
    bank[indices] = normalize(features)
    labels[indices] = np.argmax(bank[indices] @ centroids.T, axis=1)
    k = len(centroids)
    if recompute:
        for c in range(k):
            if np.any(labels == c):
                centroids[c] = bank[labels == c].mean(0)
    small = np.flatnonzero(np.bincount(labels, minlength=k) < min_size)
    if len(small):
        keep = np.setdiff1d(np.arange(k), small)
        for s in small:
            rows = np.flatnonzero(labels == s)
            if len(rows):
                labels[rows] = keep[np.argmax(bank[rows] @ centroids[keep].T, axis=1)]
        for e in small:
            largest = np.argmax(np.bincount(labels, minlength=k))
            moved = reference_split(bank, labels == largest, min_size)
            labels[moved] = e
            centroids[e] = bank[moved].mean(0)
            centroids[largest] = bank[labels == largest].mean(0)
    return bank, labels, centroids


def initial_state(seed=0):
    bank = clustered_rows(seed)
    labels = np.arange(NUM_ROWS) % NUM_CLUSTERS
    centroids = np.stack([bank[labels == c].mean(0) for c in range(NUM_CLUSTERS)])
    return bank, labels.astype("int32"), centroids.astype("float32")


def pulled_batch(centroid, count=60, seed=1):
    """Features near one centroid: relabelling them shrinks the other clusters."""
    rng = np.random.default_rng(seed)
    return (centroid + 0.05 * rng.standard_normal((count, DIM))).astype("float32")


def run_step(state, indices, features, recompute, min_size=MIN_SIZE):
    return memory_kmeans_step(*(tf.constant(s) for s in state), tf.constant(indices, tf.int32),
                              tf.constant(features), tf.constant(recompute),
                              momentum=0.0, min_cluster_size=min_size)


def test_update_matches_numpy_and_dissolves_small_clusters():
    state = initial_state()
    # Rows 0..59 hold 10 members of each cluster; all of them join cluster 0.
    indices = np.arange(BATCH)
    features = pulled_batch(state[2][0])
    rows, labels, centroids, change_ratio = run_step(state, indices, features, True)
    bank = state[0].copy()
    bank[indices] = rows.numpy()
    expected = reference_step(*state, indices, features, True, MIN_SIZE)
    # That leaves clusters 1..5 with 30 members each, above MIN_SIZE; the next
    # 120 rows (20 of each cluster) take them below it.
    _, labels2, centroids2, _ = run_step(
        (bank, labels.numpy(), centroids.numpy()), np.arange(60, 180),
        pulled_batch(centroids.numpy()[0], count=120, seed=2), True)
    expected2 = reference_step(*expected, np.arange(60, 180),
                               pulled_batch(centroids.numpy()[0], count=120, seed=2),
                               True, MIN_SIZE)
    np.testing.assert_allclose(bank, expected[0], atol=1e-6)
    np.testing.assert_array_equal(labels.numpy(), expected[1])
    np.testing.assert_allclose(centroids.numpy(), expected[2], atol=1e-5)
    np.testing.assert_array_equal(labels2.numpy(), expected2[1])
    np.testing.assert_allclose(centroids2.numpy(), expected2[2], atol=1e-5)
    assert 0.0 < float(change_ratio) <= 1.0
    # The second update did create small clusters (the test can fail): the
    # NumPy update, which the kernel matched above, without dissolving ...
    undissolved = reference_step(*expected, np.arange(60, 180),
                                 pulled_batch(centroids.numpy()[0], count=120, seed=2),
                                 True, min_size=0)[1]
    assert np.bincount(undissolved, minlength=NUM_CLUSTERS).min() < MIN_SIZE
    # ... and none is left after it.
    assert np.bincount(labels2.numpy(), minlength=NUM_CLUSTERS).min() >= MIN_SIZE


def test_layer_keeps_every_cluster_at_the_minimum_size():
    memory = ClusteredBank(NUM_ROWS, DIM, NUM_CLUSTERS, min_cluster_size=MIN_SIZE,
                           centroid_update_interval=2)
    memory.initialize(clustered_rows(seed=3), num_iters=5)
    assert np.bincount(memory.assignments.numpy(), minlength=NUM_CLUSTERS).min() >= MIN_SIZE
    rng = np.random.default_rng(4)
    for step in range(3):
        indices = rng.permutation(NUM_ROWS)[:BATCH]
        target = memory.centroids.numpy()[0]
        memory.write(tf.constant(indices), tf.constant(pulled_batch(target, BATCH, seed=step)))
        sizes = np.bincount(memory.assignments.numpy(), minlength=NUM_CLUSTERS)
        assert sizes.min() >= MIN_SIZE, (step, sizes)
    assert int(memory.updates.numpy()) == 3


def test_update_assigns_rows_to_the_nearest_centroid():
    memory = ClusteredBank(NUM_ROWS, DIM, NUM_CLUSTERS, min_cluster_size=MIN_SIZE,
                           centroid_update_interval=1000)
    # 40 members per cluster, random new rows: no cluster comes near the
    # minimum size (which would relabel other rows).
    memory.initialize(clustered_rows(seed=5), np.arange(NUM_ROWS) % NUM_CLUSTERS)
    before_bank, before_labels = memory.features.numpy(), memory.assignments.numpy()
    centroids = memory.centroids.numpy()
    rng = np.random.default_rng(6)
    indices = rng.permutation(NUM_ROWS)[:BATCH]
    features = rng.standard_normal((BATCH, DIM)).astype("float32")
    memory.write(tf.constant(indices), tf.constant(features))
    np.testing.assert_array_equal(memory.assignments.numpy()[indices],
                                  np.argmax(normalize(features) @ centroids.T, axis=1))
    np.testing.assert_allclose(memory.features.numpy()[indices], normalize(features),
                               atol=1e-6)
    others = np.setdiff1d(np.arange(NUM_ROWS), indices)
    np.testing.assert_array_equal(memory.assignments.numpy()[others], before_labels[others])
    np.testing.assert_array_equal(memory.features.numpy()[others], before_bank[others])
    np.testing.assert_array_equal(memory.centroids.numpy(), centroids)  # interval not reached


def test_centroids_are_member_means_after_the_interval():
    memory = ClusteredBank(NUM_ROWS, DIM, NUM_CLUSTERS, min_cluster_size=MIN_SIZE,
                           centroid_update_interval=2)
    memory.initialize(clustered_rows(seed=7), np.arange(NUM_ROWS) % NUM_CLUSTERS)
    rng = np.random.default_rng(8)
    for _ in range(2):
        memory.write(tf.constant(rng.permutation(NUM_ROWS)[:BATCH]),
                     tf.constant(rng.standard_normal((BATCH, DIM)).astype("float32")))
    bank, labels = memory.features.numpy(), memory.assignments.numpy()
    expected = np.stack([bank[labels == c].mean(0) for c in range(NUM_CLUSTERS)])
    np.testing.assert_allclose(memory.centroids.numpy(), expected, atol=1e-5)

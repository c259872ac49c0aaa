"""Gather, run on the global batch, slice: 2 replicas agree with one device."""

import numpy as np
import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.ops import MemoryBankKMeans, kmeans, mira_assign, on_global_batch, sinkhorn
from tests.methods.harness import mirrored_strategy

GLOBAL_BATCH = 8


def run_per_replica(strategy, fn, global_inputs):
    """Runs fn on each replica's rows of `global_inputs`; returns the per-replica outputs."""
    local = GLOBAL_BATCH // strategy.num_replicas_in_sync
    inputs = strategy.experimental_distribute_values_from_function(
        lambda context: global_inputs[context.replica_id_in_sync_group * local:][:local])
    outputs = tf.function(lambda x: strategy.run(fn, args=(x,)))(inputs)
    return tf.nest.map_structure(strategy.experimental_local_results, outputs)


def test_kernels_on_the_global_batch_match_one_device():
    strategy = mirrored_strategy()
    assert strategy.num_replicas_in_sync == 2
    rng = np.random.default_rng(0)
    features = tf.constant(rng.standard_normal((GLOBAL_BATCH, 4)).astype("float32"))
    scores = tf.constant(rng.standard_normal((GLOBAL_BATCH, 3)).astype("float32"))

    def per_replica(x):
        assignments, centroids = on_global_batch(kmeans, x[:, :4], num_clusters=3,
                                                 num_iters=4, per_row=(True, False))
        codes = on_global_batch(sinkhorn, x[:, 4:], num_iters=3, epsilon=0.5)
        labels = on_global_batch(mira_assign, x[:, 4:] / 0.2, beta=0.7, num_iters=10)
        return assignments, centroids, codes, labels

    assignments, centroids, codes, labels = run_per_replica(
        strategy, per_replica, tf.concat([features, scores], axis=1))
    expected_assignments, expected_centroids = kmeans(features, 3, 4)
    np.testing.assert_array_equal(np.concatenate(assignments), expected_assignments.numpy())
    for replica_centroids in centroids:  # every replica holds the global centroids
        np.testing.assert_allclose(replica_centroids, expected_centroids.numpy(), atol=1e-6)
    np.testing.assert_allclose(np.concatenate(codes), sinkhorn(scores, 3, 0.5).numpy(),
                               atol=1e-6)
    np.testing.assert_allclose(np.concatenate(labels),
                               mira_assign(scores / 0.2, 0.7, 10).numpy(), atol=1e-6)


def test_memory_kmeans_state_is_replicated():
    strategy = mirrored_strategy()
    rng = np.random.default_rng(1)
    bank = rng.standard_normal((48, 4)).astype("float32")
    indices = tf.constant(rng.permutation(48)[:GLOBAL_BATCH], tf.int32)
    features = tf.constant(rng.standard_normal((GLOBAL_BATCH, 4)).astype("float32"))

    def build():
        memory = MemoryBankKMeans(48, 4, num_clusters=3, min_cluster_size=8,
                                  centroid_update_interval=1)
        memory.initialize(bank, np.arange(48) % 3)
        return memory

    single = build()
    single.update(indices, features)
    with strategy.scope():
        mirrored = build()
    assert mirrored.centroids.value.aggregation == tf.VariableAggregation.ONLY_FIRST_REPLICA

    def per_replica(local_rows):
        # Like after_apply: every replica updates from the all-gathered batch.
        gathered = distribute.all_gather(local_rows)
        mirrored.update(indices, gathered)
        return tf.zeros([1])

    run_per_replica(strategy, per_replica, features)
    for variable in ("assignments", "centroids", "features"):
        expected = getattr(single, variable).numpy()
        for value in strategy.experimental_local_results(getattr(mirrored, variable).value):
            np.testing.assert_allclose(value.numpy(), expected, atol=1e-6)

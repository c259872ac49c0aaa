"""Gather, run on the global batch, slice: 2 replicas agree with one device.

`on_global_batch` lives in `keras_ssl.distribute`; the kernels it runs are in
`keras_ssl.ops`. (That replicated memory layers stay identical across replicas
is tested with the memory family, in tests/core/test_memory.py.)
"""

import numpy as np
import tensorflow as tf

from keras_ssl import distribute, ops
from keras_ssl.distribute import on_global_batch
from keras_ssl.ops import kmeans, mira_assign, sinkhorn
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


def test_ops_still_exports_on_global_batch():
    assert ops.on_global_batch is distribute.on_global_batch
    from keras_ssl.ops.distributed import on_global_batch as old_location
    assert old_location is on_global_batch

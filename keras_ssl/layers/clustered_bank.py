"""A bank with online k-means labels and centroids: InterCLR's (and ODC's) memory.

The state lives here; every update is one call of the pure XLA kernels in
`keras_ssl.ops.memory_kmeans`, whose docstring describes the algorithm and
where it departs from the official code.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_ssl.layers.memory import Memory, unit_rows
from keras_ssl.ops.kmeans import kmeans
from keras_ssl.ops.memory_kmeans import memory_kmeans_step, settle_clusters


@keras.saving.register_keras_serializable(package="keras_ssl")
class ClusteredBank(Memory):
    """One feature and one cluster label per training example, and K centroids.

    Xie et al., "Delving into Inter-Image Invariance for Unsupervised Visual
    Representations" (InterCLR), IJCV 2022; Zhan et al., "Online Deep
    Clustering for Unsupervised Representation Learning" (ODC), CVPR 2020.

    Args:
        size: number of training examples N (one bank row each).
        dim: feature width D.
        num_clusters: K (InterCLR, ImageNet: 10,000).
        min_cluster_size: clusters smaller than this are dissolved and
            refilled after every write (InterCLR: 20). Needs
            size >= 2 * min_cluster_size * num_clusters to be guaranteed.
        centroid_update_interval: recompute all centroids from the bank every
            this many writes (InterCLR: 10).
        momentum: weight of the OLD row, the memory family's convention:
            `row <- normalize(m * row + (1 - m) * normalize(new))`. InterCLR
            replaces rows: 0.0 (the default).
        seed: seed of the random unit-norm initial rows.

    Until `initialize` is called the bank holds random unit vectors labelled
    `row % num_clusters`, so every cluster starts with N / K members. The
    variables are `features`, `assignments` (int32 [N]), `centroids` [K, D]
    and `updates` (writes so far). The bank is replicated, never sharded:
    the kernel relabels and splits clusters over the whole bank.

    Example:
    >>> bank = ClusteredBank(size=64, dim=4, num_clusters=4, min_cluster_size=4)
    >>> change_ratio = bank.write(tf.range(8), tf.random.normal([8, 4]))
    >>> int(tf.reduce_min(tf.math.bincount(bank.assignments.value))) >= 4
    True
    """

    def __init__(self, size, dim, num_clusters, min_cluster_size=20,
                 centroid_update_interval=10, momentum=0.0, seed=0, **kwargs):
        super().__init__(size, dim, momentum=momentum, seed=seed, **kwargs)
        self.num_clusters = int(num_clusters)
        self.min_cluster_size = int(min_cluster_size)
        self.centroid_update_interval = int(centroid_update_interval)
        rows = unit_rows(np.random.default_rng(seed).standard_normal((self.size, self.dim)))
        labels = (np.arange(self.size) % self.num_clusters).astype("int32")
        centroids = np.zeros((self.num_clusters, self.dim), "float32")
        np.add.at(centroids, labels, rows)
        centroids /= np.maximum(np.bincount(labels, minlength=self.num_clusters), 1)[:, None]
        constant = keras.initializers.Constant
        self.features = self.add_state("features", (self.size, self.dim),
                                       initializer=constant(rows))
        self.assignments = self.add_state("assignments", (self.size,), dtype="int32",
                                          initializer=constant(labels))
        self.centroids = self.add_state("centroids", (self.num_clusters, self.dim),
                                        initializer=constant(centroids))
        self.updates = self.add_state("updates", (), dtype="int64")
        self.built = True

    def read(self):
        """The features [N, D] before this step's write."""
        return self.features.value

    def peek_with(self, indices, rows, gathered=False):
        """The features [N, D] as `write(indices, rows)` will leave them, without writing.

        Labels and centroids are not predicted: they depend on the whole
        k-means step.
        """
        table = self.features.value
        positions, new = self.momentum_rows(table, indices, rows, gathered)
        return tf.tensor_scatter_nd_update(table, positions, new)

    def write(self, indices, rows, gathered=False):
        """Writes and relabels the global batch's rows, then maintains the clusters.

        Args:
            indices: [B] this replica's example indices (global if `gathered`).
            rows: [B, D] their features (normalised here).
            gathered: the inputs are already all-gathered.

        Returns:
            The fraction of the written rows whose label changed (InterCLR
            logs it).
        """
        indices = tf.cast(self.gather(indices, gathered), tf.int32)
        rows = self.gather(rows, gathered)
        updates = self.updates.value + 1
        recompute = tf.equal(updates % self.centroid_update_interval, 0)
        # Tensors, not the variables: a jitted function given a variable keeps
        # it in its trace, and fails once a second model's bank replaces it.
        new_rows, assignments, centroids, change_ratio = memory_kmeans_step(
            tf.convert_to_tensor(self.features), tf.convert_to_tensor(self.assignments),
            tf.convert_to_tensor(self.centroids),
            indices, rows, recompute,
            momentum=float(self.momentum), min_cluster_size=self.min_cluster_size)
        # The bank changes only at `indices`: scatter those rows here rather
        # than copy the whole bank out of the XLA kernel.
        self.features.assign(tf.tensor_scatter_nd_update(
            self.features.value, indices[:, None], new_rows))
        self.assignments.assign(assignments)
        self.centroids.assign(centroids)
        self.updates.assign(updates)
        return change_ratio

    def initialize(self, features, assignments=None, num_iters=20):
        """Fills the whole bank and clusters it (the official hook's set-up step).

        Args:
            features: [N, D] features of every training example.
            assignments: optional [N] initial labels; by default k-means
                (k-means++ seeding, `num_iters` iterations) on the
                normalised features.
        """
        rows = tf.math.l2_normalize(tf.cast(features, tf.float32), axis=1)
        if assignments is None:
            assignments, _ = kmeans(rows, self.num_clusters, num_iters,
                                    init="kmeans++", seed=self.seed)
        assignments, centroids = settle_clusters(
            rows, tf.cast(assignments, tf.int32), tf.convert_to_tensor(self.centroids),
            min_cluster_size=self.min_cluster_size)
        self.features.assign(rows)
        self.assignments.assign(assignments)
        self.centroids.assign(centroids)

    def get_config(self):
        return {**super().get_config(), "num_clusters": self.num_clusters,
                "min_cluster_size": self.min_cluster_size,
                "centroid_update_interval": self.centroid_update_interval}

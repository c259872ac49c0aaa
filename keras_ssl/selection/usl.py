"""USL: choose which training images to label from self-supervised features alone.

Unsupervised Selective Labeling (Wang, Lian, Yu, "Unsupervised Selective
Labeling for More Effective Semi-Supervised Learning", ECCV 2022; official
code TonyLianLong/UnsupervisedSelectiveLabeling, commit ceaab3c,
`selective_labeling/usl-cifar.py`) picks a label budget that is both
*representative* (dense regions of the feature space) and *diverse* (spread
over it), with no labels and no training:

1. Features: L2-normalised features of a self-supervised encoder (officially
   the 128-d normalised CLD head; here whatever encoder the caller gives, so
   normalise to keep the official distance scales: squared distances of unit
   vectors lie in [0, 4], which is what the horizon of 4 or 1 refers to).
2. Density: inverse mean squared distance to the k = 400 nearest neighbours,
   self included (`density.py`).
3. k-means into `budget` clusters: Euclidean Lloyd, 200 iterations, started
   from `budget` distinct random rows (`nn_utils.py:273-333`, `KMeans`),
   one run per seed (the official runs seeds 1..5 and reports each).
4. One pick per cluster: the densest member, pushed away from the other
   clusters' picks by the iterative regulariser (`regularized_picks.py`).

The k-means is `keras_ssl.ops.dataset_kmeans.lloyd_kmeans` (Euclidean, no
tolerance, so it stops early only at a fixed point, where the official
200 iterations would stay) from rows drawn by
`keras_ssl.ops.kmeans.initial_centroids`. Differences from the official
k-means: an empty cluster keeps its previous centroid (officially it becomes
NaN and is never chosen again), and the initial rows come from TensorFlow's
stateless generator, not torch's `randperm` (the same seed gives the same
rows on every machine, but not the official rows). `kmeans_init="kmeans++"`
is an extra, off by default: random rows often start two centres in one
dense region and none in another, which Lloyd cannot undo.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from keras_ssl.ops.dataset_kmeans import kmeans_plus_plus, lloyd_kmeans
from keras_ssl.ops.kmeans import initial_centroids
from keras_ssl.selection.density import USL_KNN_K, mean_knn_distance
from keras_ssl.selection.regularized_picks import (USL_REG_ALPHA, USL_REG_HORIZON,
                                                   USL_REG_ITERS, USL_REG_MOMENTUM,
                                                   USL_REG_WEIGHT, regularized_picks)

# selective_labeling/config.py: cfg.USL.K_MEANS_NITERS and cfg.USL.SEEDS.
USL_KMEANS_ITERS = 200
USL_SEEDS = (1, 2, 3, 4, 5)

# The official settings per data set: config.py (CIFAR-10, the defaults) and
# configs/cifar100_usl.yaml. Pass one as keyword arguments of `select_usl`.
OFFICIAL_SETTINGS = {
    "cifar10": dict(knn_k=USL_KNN_K, kmeans_iters=USL_KMEANS_ITERS, reg_iters=USL_REG_ITERS,
                    reg_weight=USL_REG_WEIGHT, reg_momentum=USL_REG_MOMENTUM,
                    reg_horizon=USL_REG_HORIZON, reg_alpha=USL_REG_ALPHA),
    "cifar100": dict(knn_k=USL_KNN_K, kmeans_iters=USL_KMEANS_ITERS, reg_iters=USL_REG_ITERS,
                     reg_weight=1.0, reg_momentum=USL_REG_MOMENTUM, reg_horizon=1.0,
                     reg_alpha=1.0),
}


@dataclasses.dataclass(frozen=True)
class USLSelection:
    """The result of `select_usl`.

    Attributes:
        indices: [budget] int64 dataset indices to label, in cluster order.
        assignments: [N] int32 k-means cluster of every example.
        mean_distances: [N] float32 mean squared kNN distance (density = 1 / it).
    """

    indices: np.ndarray
    assignments: np.ndarray
    mean_distances: np.ndarray


KMEANS_INITS = ("random", "kmeans++")


def usl_kmeans(features, num_clusters, *, iters=USL_KMEANS_ITERS, init="random", seed=1):
    """USL's k-means: Euclidean Lloyd iterations; returns [N] int32 assignments.

    Args:
        features: [N, D] float features.
        num_clusters: K.
        iters: most Lloyd iterations (official: 200).
        init: "random" (official: K distinct random rows) or "kmeans++"
            (an extra: greedy k-means++ seeding, `dataset_kmeans.kmeans_plus_plus`).
            Random rows often put two centres in one dense region and none
            in another, which Lloyd cannot undo; k-means++ rarely does.
        seed: Python int seed of the starting rows.
    """
    features = tf.convert_to_tensor(features, tf.float32)
    num_rows = int(features.shape[0])
    if not 1 <= num_clusters <= num_rows:
        raise ValueError(f"num_clusters={num_clusters} must be between 1 and the number of "
                         f"examples {num_rows}.")
    if init not in KMEANS_INITS:
        raise ValueError(f"k-means init={init!r} is not one of {', '.join(KMEANS_INITS)}.")
    if init == "random":
        start = initial_centroids(features, int(num_clusters), "random", int(seed))
    else:
        start = kmeans_plus_plus(features, int(num_clusters), spherical=False, seed=int(seed))
    # tolerance 0: only a fixed point stops it before `iters`, as the official
    # loop, which always runs its 200 iterations, would stay there anyway.
    result = lloyd_kmeans(features, start, max_iters=iters, tolerance=0.0, spherical=False)
    return result.assignments.numpy()


def select_usl(features, budget, *, num_clusters=None, knn_k=USL_KNN_K,
               kmeans_iters=USL_KMEANS_ITERS, reg_iters=USL_REG_ITERS,
               reg_weight=USL_REG_WEIGHT, reg_momentum=USL_REG_MOMENTUM,
               reg_horizon=USL_REG_HORIZON, reg_alpha=USL_REG_ALPHA, kmeans_init="random",
               normalize=True, seed=1):
    """Chooses `budget` examples to label, by USL.

    Args:
        features: [N, D] features of the unlabeled training set, in dataset order.
        budget: number of examples to label.
        num_clusters: k-means clusters (None: `budget`, as officially; the
            official code uses budget + 1 for 2500 labels so that one empty
            cluster still leaves 2500 picks).
        knn_k: neighbours of the density (400; at most N).
        kmeans_iters: Lloyd iterations (200).
        reg_iters, reg_weight, reg_momentum, reg_horizon, reg_alpha: the
            regulariser (10, 0.5, 0.9, 4, 0.5 on CIFAR-10; see
            `OFFICIAL_SETTINGS` for CIFAR-100).
        kmeans_init: "random" (official) or "kmeans++" (see `usl_kmeans`).
        normalize: L2-normalise the features first (the official features are).
        seed: k-means seed (official runs: 1 to 5).

    Returns:
        `USLSelection`; `indices` has exactly `budget` distinct entries.

    Example:
    >>> selection = select_usl(features, budget=40, seed=1)
    >>> write_label_indices("usl_40.txt", selection.indices)
    """
    features = tf.convert_to_tensor(features, tf.float32)
    if features.shape.rank != 2:
        raise ValueError(f"features must be [N, D], got shape {features.shape}.")
    num_rows = int(features.shape[0])
    num_clusters = int(num_clusters or budget)
    if not 1 <= budget <= num_rows:
        raise ValueError(f"budget={budget} must be between 1 and the number of examples "
                         f"{num_rows}.")
    if num_clusters < budget:
        raise ValueError(f"num_clusters={num_clusters} must be at least the budget {budget}.")
    if normalize:
        features = tf.math.l2_normalize(features, axis=1)
    mean_distances = mean_knn_distance(features, knn_k)
    assignments = usl_kmeans(features, num_clusters, iters=kmeans_iters, init=kmeans_init,
                             seed=seed)
    indices = regularized_picks(features, mean_distances, assignments, num_clusters, budget,
                                iters=reg_iters, weight=reg_weight, momentum=reg_momentum,
                                horizon=reg_horizon, alpha=reg_alpha)
    return USLSelection(indices=indices, assignments=assignments, mean_distances=mean_distances)

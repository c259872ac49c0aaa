"""A neighbour table the input pipeline reads by dataset index (CLIM's centre-wise local selection).

CLIM (Li, Zhang, Xiong, "Center-wise Local Image Mixture For Contrastive
Representation Learning", BMVC 2021, arXiv 2011.02697; no official code)
mixes each anchor with an image chosen from the memory bank: among the
anchor's k nearest neighbours, those in the anchor's k-means cluster that lie
closer to the cluster centre than the anchor does ("centre-wise local
selection"). This module keeps that choice where the tf.data graph can read
it, the one place where features reach back into the pipeline
(shared/DESIGN.md, "How data flows"):

- `centre_wise_neighbours`: the selection, from features and a clustering;
  the k-NN search is chunked (`keras_ssl.ops.topk_neighbors`), never N x N.
- `NeighbourTable`: the selection as model state, [N, k] candidate indices
  (-1 padding), refreshed between epochs from the bank
  (`keras_ssl.ops.dataset_kmeans`), saved and checkpointed with the model
  (so a resumed run holds the table it stopped with), and read inside the
  pipeline by `lookup`, which draws one candidate per row.
- `NeighbourTableRefresh`: the callback that calls the method's epoch hook.

Timing. tf.data runs ahead of training: the first batches of epoch e are
made while epoch e - 1 still trains, before the table is refreshed for e. A
batch that read whichever table happened to be there would make the mixing
depend on thread timing. So `lookup` of a batch of epoch e first waits until
the table is marked ready for epoch e (`mark_ready`, which the epoch hook
calls after refreshing): the same seed then gives the same neighbours
however far the pipeline runs ahead, and a resumed run gives what an
uninterrupted one would have.
"""

import sys
import threading
import time

import keras
import numpy as np
import tensorflow as tf

from keras_ssl.distribute.cross_replica import replicated_state_scope
from keras_ssl.ops.dataset_kmeans import dataset_kmeans
from keras_ssl.ops.neighbors import QUERY_CHUNK, topk_neighbors

# At most this many anchor x bank scores per k-NN call (the same budget as
# keras_ssl.ops.neighbors): ImageNet's 1.28M-row bank is searched ~50 anchors at a time.
_MAX_SCORES = 1 << 26


def centre_wise_neighbours(features, assignments, centre_similarities, num_neighbours):
    """Each row's k nearest neighbours that share its cluster and lie closer to its centre.

    For anchor i in cluster c, the candidates are the rows j among the
    `num_neighbours` rows most similar to i (by dot product, i itself left
    out) with `assignments[j] == c` and
    `centre_similarities[j] > centre_similarities[i]`, in order of their
    similarity to i.

    Args:
        features: [N, D] float rows (unit-norm for cosine neighbours).
        assignments: [N] int cluster of each row.
        centre_similarities: [N] float similarity of each row to its own
            cluster centre (`KMeansResult.scores`).
        num_neighbours: k, a Python int, 1 <= k < N.

    Returns:
        int32 NumPy [N, k]: candidate indices, most similar first, then -1.
    """
    features = tf.convert_to_tensor(features, tf.float32)
    assignments = tf.cast(assignments, tf.int32)
    centre_similarities = tf.cast(centre_similarities, tf.float32)
    num_rows = int(features.shape[0])
    if not 1 <= num_neighbours < num_rows:
        raise ValueError(f"num_neighbours={num_neighbours} must lie in [1, {num_rows}) "
                         f"for {num_rows} rows (each row's own is left out).")
    chunk = int(min(QUERY_CHUNK, num_rows, max(1, _MAX_SCORES // num_rows)))
    tables = []
    for start in range(0, num_rows, chunk):
        anchors = tf.range(start, min(start + chunk, num_rows))
        # Padded to a whole chunk, so every call has one shape (one XLA compile).
        padded = tf.pad(anchors, [[0, chunk - int(anchors.shape[0])]])
        # One more than k: the anchor itself is (almost always) its own nearest row.
        indices, _ = topk_neighbors(tf.gather(features, padded), features, num_neighbours + 1)
        tables.append(_select(indices[:int(anchors.shape[0])], anchors, assignments,
                              centre_similarities, num_neighbours))
    return np.concatenate([table.numpy() for table in tables])


def _select(indices, anchors, assignments, centre_similarities, num_neighbours):
    """The centre-wise rule on k + 1 searched rows per anchor; [B, k] int32, -1 padded."""
    not_self = tf.not_equal(indices, anchors[:, None])
    # The first k rows other than the anchor: exactly k even if, with tied
    # duplicates of the anchor, the anchor itself ranked beyond k + 1.
    within_k = not_self & (tf.cumsum(tf.cast(not_self, tf.int32), axis=1) <= num_neighbours)
    same_cluster = tf.equal(tf.gather(assignments, indices),
                            tf.gather(assignments, anchors)[:, None])
    closer = (tf.gather(centre_similarities, indices)
              > tf.gather(centre_similarities, anchors)[:, None])
    keep = within_k & same_cluster & closer
    # Kept entries first, in their similarity order (a stable sort on "not kept").
    order = tf.argsort(tf.cast(~keep, tf.int32), axis=1, stable=True)
    packed = tf.gather(tf.where(keep, indices, -1), order, batch_dims=1)
    return packed[:, :num_neighbours]


@keras.saving.register_keras_serializable(package="keras_ssl")
class NeighbourTable(keras.layers.Layer):
    """Up to k candidate neighbours of every training example, for the input pipeline.

    Args:
        size: N, the training-set size (one row per dataset index).
        num_neighbours: k, the candidates kept per row (the k-NN width).
        wait_seconds: how long a pipeline `lookup` waits for its epoch's
            table before it fails (a run whose epoch hook never runs would
            otherwise hang).

    The state is one variable, `candidates` (int32 [N, k], -1 where there is
    no candidate; all -1 until the first `refresh`), created like the memory
    family's (`keras_ssl.layers.Memory.add_state`: ONLY_FIRST_REPLICA, every
    replica assigns the same table). Which epoch the table is ready for is
    not state: it is this process's progress, reset by `reset_ready`.

    Example:
    >>> table = NeighbourTable(size=4, num_neighbours=2)
    >>> table.set_candidates([[1, -1], [-1, -1], [3, 0], [2, -1]])
    >>> table.mark_ready(0)
    >>> table.lookup(tf.constant([0, 1]), tf.constant([1, 2]), epoch=0).numpy().tolist()
    [1, 1]
    """

    def __init__(self, size, num_neighbours, wait_seconds=3600.0, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)
        self.num_neighbours = int(num_neighbours)
        self.wait_seconds = float(wait_seconds)
        with replicated_state_scope():
            self.candidates = self.add_weight(
                shape=(self.size, self.num_neighbours), dtype="int32", trainable=False,
                initializer=keras.initializers.Constant(-1), name="candidates")
        self._ready = threading.Condition()
        self._ready_epoch = -1
        self.built = True

    # ---- the epoch hook's side ---------------------------------------------------
    def refresh(self, features, *, num_clusters, seed=0, kmeans_iterations=300):
        """Re-selects every row's candidates from `features` (the memory bank).

        Spherical k-means++ and Lloyd (`keras_ssl.ops.dataset_kmeans`, one
        restart) into `num_clusters` clusters, then `centre_wise_neighbours`
        with the cosine as similarity. Returns a few figures: the share of
        rows with a candidate, the mean number of candidates, the k-means
        iterations.
        """
        features = tf.math.l2_normalize(tf.convert_to_tensor(features, tf.float32), axis=1)
        if int(features.shape[0]) != self.size:
            raise ValueError(f"The table has {self.size} rows, the features {features.shape[0]}.")
        clusters = dataset_kmeans(features, num_clusters, max_iters=kmeans_iterations,
                                  spherical=True, seed=seed, num_inits=1)
        candidates = centre_wise_neighbours(features, clusters.assignments, clusters.scores,
                                            self.num_neighbours)
        self.set_candidates(candidates)
        counts = np.sum(candidates >= 0, axis=1)
        return {"with_neighbour": float(np.mean(counts > 0)),
                "mean_candidates": float(np.mean(counts)),
                "kmeans_iterations": int(clusters.iterations)}

    def set_candidates(self, candidates):
        """Replaces the table with int [N, k] `candidates` (-1 for none)."""
        self.candidates.assign(tf.cast(candidates, tf.int32))

    def mark_ready(self, epoch):
        """Lets the pipeline's batches of epochs <= `epoch` read the table."""
        with self._ready:
            self._ready_epoch = max(self._ready_epoch, int(epoch))
            self._ready.notify_all()

    def reset_ready(self, epoch=-1):
        """Sets the epoch the table is ready for (before `fit`, -1: none yet)."""
        with self._ready:
            self._ready_epoch = int(epoch)
            self._ready.notify_all()

    def release(self):
        """Lets every waiting and future lookup through (training is over)."""
        self.mark_ready(sys.maxsize)

    # ---- the pipeline's side -----------------------------------------------------
    def lookup(self, indices, seed, epoch=None):
        """One neighbour per row: a uniformly drawn candidate, or the row itself if it has none.

        Args:
            indices: int [B] dataset indices of the anchors.
            seed: int32 [2] stateless seed of the draw.
            epoch: the epoch of the batch (a scalar tensor in tf.data); the
                lookup first waits until `mark_ready(epoch)`. None reads the
                table as it is.

        Returns:
            int64 [B] dataset indices of the neighbours.
        """
        indices = tf.cast(indices, tf.int64)
        waited = []
        if epoch is not None:
            waited = [tf.py_function(self._wait_until_ready, [tf.cast(epoch, tf.int64)],
                                     tf.int64)]
        with tf.control_dependencies(waited):
            rows = tf.gather(self.candidates.value, indices)
        counts = tf.reduce_sum(tf.cast(rows >= 0, tf.int32), axis=1)
        uniform = tf.random.stateless_uniform(tf.shape(counts), seed)
        picks = tf.minimum(tf.cast(uniform * tf.cast(counts, tf.float32), tf.int32),
                           tf.maximum(counts - 1, 0))
        chosen = tf.cast(tf.gather(rows, picks, batch_dims=1), tf.int64)
        return tf.where(counts > 0, chosen, indices)

    def _wait_until_ready(self, epoch):
        epoch = int(epoch)
        with self._ready:
            if not self._ready.wait_for(lambda: self._ready_epoch >= epoch,
                                        timeout=self.wait_seconds):
                raise RuntimeError(
                    f"The neighbour table was not made ready for epoch {epoch} within "
                    f"{self.wait_seconds:.0f} s: the method's epoch hook must run "
                    "(NeighbourTableRefresh, which CLIM.fit adds) or call mark_ready.")
        return np.int64(epoch)

    def get_config(self):
        return {**super().get_config(), "size": self.size,
                "num_neighbours": self.num_neighbours, "wait_seconds": self.wait_seconds}


class NeighbourTableRefresh(keras.callbacks.Callback):
    """Runs a model's `refresh_neighbours(epoch)` hook before every epoch of a fit.

    The hook refreshes the table when it is due and marks it ready for the
    epoch, which releases the pipeline's batches of that epoch. The fit's
    first epoch is the exception: `before_fit` runs its hook before `fit`
    starts, because Keras, under a distribution strategy, reads a first batch
    to build the model before any callback runs, and that batch waits for
    the table. At the end of training every waiting batch is let go
    (`NeighbourTable.release`), so that Keras can tear down an iterator that
    ran ahead into an epoch it will not start.

    Kept by 0-based epoch: `seconds`, the time of each hook (the E-step's
    share of the epoch), and `figures`, what the hook returned for a refresh
    (`NeighbourTable.refresh`'s figures; nothing for epochs it only marked).

    Args:
        table: the `NeighbourTable` the hook refreshes.
    """

    # CLIM.fit adds one of these unless a callback with this attribute is given.
    refreshes_neighbour_table = True

    def __init__(self, table):
        super().__init__()
        self.table = table
        self.seconds = {}
        self.figures = {}
        self._done_before_fit = None

    def before_fit(self, model, initial_epoch):
        """Runs the hook of the fit's first epoch now; `on_epoch_begin` then skips it."""
        self.table.reset_ready()
        self._run(model, initial_epoch)
        self._done_before_fit = initial_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if int(epoch) == self._done_before_fit:
            self._done_before_fit = None
            return
        self._run(self.model, int(epoch))

    def on_train_end(self, logs=None):
        self.table.release()

    def _run(self, model, epoch):
        start = time.perf_counter()
        figures = model.refresh_neighbours(epoch)
        self.seconds[epoch] = time.perf_counter() - start
        if figures:
            self.figures[epoch] = figures

"""A cosine classifier with one class per training image, its rows split across replicas.

Liu et al., "Train a One-Million-Way Instance Classifier for Unsupervised
Visual Representation Learning", AAAI 2021: an N x d matrix W (N up to 1.28M)
scores every image against every image's class. For hybrid parallelism W is
model-parallel: replica r keeps only the rows [r * S, (r + 1) * S),
S = ceil(N / R), on its own device, scores the all-gathered batch against
them, and `keras_ssl.distribute.sharded_softmax` combines the blocks.
"""

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.trackable import base as trackable

from keras_ssl.distribute.cross_replica import all_gather, replica_id
from keras_ssl.distribute.sharded_softmax import padding_mask

# Initial rows are drawn per block of this many global rows, so that W does
# not depend on how many replicas it is split over.
_INIT_BLOCK = 4096


def _per_replica_variable(shape, name):
    """A variable with one independent [shape] value per replica of the current strategy.

    A SyncOnRead variable with aggregation NONE is the strategy's own notion
    of per-replica state: one component on each replica's device, which the
    strategy never makes equal (unlike a MirroredVariable, which is one value
    copied to every replica and updated with the sum of the replicas'
    gradients). In replica context it reads and writes the component of the
    replica that runs, by the strategy's own placement, so the same code
    runs under MirroredStrategy (one component per local device),
    MultiWorkerMirroredStrategy (each worker creates its own replicas'
    components) and TPUStrategy (one program for all cores, each core
    addressing its own component), with no replica id known while tracing.
    It is trainable so that a GradientTape watches the component it reads.
    Outside any strategy it is a plain variable.
    """
    return tf.Variable(tf.zeros(shape), name=name, trainable=True,
                       synchronization=tf.VariableSynchronization.ON_READ,
                       aggregation=tf.VariableAggregation.NONE)


def _components(variable):
    """The per-device variables of `variable`, in local replica order."""
    if isinstance(variable, tf.distribute.DistributedValues):
        return tuple(variable.values)
    return (variable,)


def _first_local_replica(strategy, local_replicas):
    """Global replica id of this process' first replica.

    Replica ids run over the workers in task order, each with the same
    number of local replicas (MultiWorkerMirroredStrategy, multi-host TPU).
    """
    if local_replicas >= strategy.num_replicas_in_sync:
        return 0
    task_id = getattr(getattr(strategy, "cluster_resolver", None), "task_id", 0) or 0
    return int(task_id) * local_replicas


class _ShardTable(trackable.Trackable):
    """What a checkpoint holds of the classifier: W [N, d] (and its momentum), unsharded.

    The shards are saved as the full matrix without padding rows (assembled
    with `Strategy.gather`, a collective in which every worker of a
    multi-worker run takes part, as every worker takes part in a save), so a
    checkpoint restores into any number of replicas: each replica takes its
    rows of the saved matrix. The price is the N x d matrix on each host at
    save and restore time, i.e. 512 MB at N = 1M, d = 128, float32.
    """

    def __init__(self, layer):
        self._layer = layer

    def _serialize_to_tensors(self):
        layer = self._layer
        tensors = {"weights": layer._gather(layer._weights)}
        if layer._velocity is not None:
            tensors["momentum"] = layer._gather(layer._velocity)
        return tensors

    def _restore_from_tensors(self, restored_tensors):
        layer = self._layer
        for key, variable in (("weights", layer._weights), ("momentum", layer._velocity)):
            if key not in restored_tensors or variable is None:
                continue
            full = restored_tensors[key]
            if full.shape[0] != layer.num_classes or full.shape[1] != layer.dim:
                raise ValueError(
                    f"The checkpoint's classifier {key} is {tuple(full.shape)}; this "
                    f"ShardedClassifier holds ({layer.num_classes}, {layer.dim}).")
            layer._scatter_full(variable, full)
        return tf.no_op()


@keras.saving.register_keras_serializable(package="keras_ssl")
class ShardedClassifier(keras.layers.Layer):
    """N-way cosine classifier whose weight rows are split over the strategy's replicas.

    Args:
        num_classes: N, the number of classes (training images).
        dim: d, the feature width.
        temperature: tau of the cosine logits `cos(w_j, x) / tau` when the
            caller passes none (0.15 per the paper's 3rd-party README).
        momentum: SGD momentum of the layer's own update (0.0: plain SGD,
            and no velocity is kept).
        weight_decay: L2 coefficient added to the gradient of W (default
            0.0, see below).
        seed: seed of the initial rows (standard normal; they do not depend
            on the number of replicas). Raw-feature initialisation
            overwrites them with `assign_rows`.

    Build under the `strategy.scope()` the layer will run in: the number of
    shards R is the strategy's `num_replicas_in_sync` at construction.

    Layout. Shard r holds the global rows [r * S, (r + 1) * S), S =
    `shard_size` = ceil(N / R), on replica r's device, so each device holds
    S x d weights (and, with momentum, S x d velocities), not N x d. W is one
    per-replica variable (a SyncOnRead variable with aggregation NONE, see
    `_per_replica_variable`) whose component on replica r is shard r;
    `shard_variables` lists this process' components. Which rows a replica
    owns follows from `replica_id_in_sync_group` at run time (`shard_offset`
    is a tensor), so one traced program serves every replica, as TPUStrategy
    requires. When R does not divide N the last shard ends with R * S - N
    zero padding rows: `logits` sets their columns to -inf, so they never win
    a softmax or a top-K, get no gradient and stay zero.

    Update. Keras optimizers under a strategy all-reduce gradients across
    replicas, which is wrong for rows each replica owns alone, so the layer
    does not go through them: in the replica function, take the gradient of
    the loss w.r.t. `local_shard()` and call `apply_gradient(gradient,
    learning_rate)`, which updates this replica's shard only, with no
    collective: `v <- momentum * v + g + weight_decay * w; w <- w - lr * v`.
    The gradient of the sharded softmax (`sharded_softmax_cross_entropy`)
    w.r.t. the local logits is already the exact unsharded one, so no
    cross-replica sum is needed. The variables are not Keras weights: they
    never appear in `model.trainable_variables`, so a Keras optimizer never
    sees them.

    Rows absent from the batch. With a softmax over all N classes every row
    gets a gradient each step (`p_ij * x_i / B` through the normaliser), so
    the update is dense: momentum moves every row every step, consistently
    with the unsharded computation. Weight decay defaults to 0: cosine
    logits do not depend on a row's norm, so decay would only shrink the rows
    of images seen once an epoch and raise their effective learning rate.

    Checkpoints. `tf.train.Checkpoint(classifier=layer)` saves W (and the
    velocities) as ONE unpadded [N, d] tensor gathered from the shards (see
    `_ShardTable`), and restoring splits it again: a checkpoint written with
    R replicas restores with any replica count (2 -> 1 and 1 -> 2 are
    tested); only N and d must match (a ValueError names both shapes).
    """

    def __init__(self, num_classes, dim, *, temperature=0.15, momentum=0.9,
                 weight_decay=0.0, seed=0, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum={momentum} must lie in [0, 1).")
        self.num_classes = int(num_classes)
        self.dim = int(dim)
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.seed = int(seed)
        strategy = tf.distribute.get_strategy()
        self.num_shards = int(strategy.num_replicas_in_sync)
        self.shard_size = -(-self.num_classes // self.num_shards)
        shape = [self.shard_size, self.dim]
        # Not attribute-tracked: the checkpoint saves them through `_ShardTable`
        # as one unsharded matrix, not one entry per replica.
        object.__setattr__(self, "_strategy", strategy)
        object.__setattr__(self, "_weights", _per_replica_variable(shape, "shards"))
        object.__setattr__(self, "_velocity", _per_replica_variable(shape, "velocities")
                           if self.momentum else None)
        components = _components(self._weights)
        first = _first_local_replica(strategy, len(components))
        for position, component in enumerate(components):
            component.assign(self._initial_rows(first + position))
        self.table = _ShardTable(self)
        self.built = True

    # ---- layout ------------------------------------------------------------------
    @property
    def shard_variables(self):
        """This process' shards, one variable per local replica, in replica order."""
        return _components(self._weights)

    @property
    def velocity_variables(self):
        """Their momentum buffers (empty with momentum 0)."""
        return () if self._velocity is None else _components(self._velocity)

    def _check_replicas(self):
        context = tf.distribute.get_replica_context()
        if context is None:
            raise RuntimeError("ShardedClassifier's per-replica methods run in replica "
                               "context (inside strategy.run), or without a strategy.")
        if self.num_shards != context.num_replicas_in_sync:
            raise ValueError(f"This classifier was built with {self.num_shards} shards "
                             f"but runs on {context.num_replicas_in_sync} replicas.")

    @property
    def shard_offset(self):
        """Global index of this replica's first row: an int64 scalar tensor (replica context)."""
        self._check_replicas()
        return tf.cast(replica_id(), tf.int64) * self.shard_size

    def local_shard(self):
        """The shards' variable; in replica context it reads and writes this replica's [S, d].

        Take the loss' gradient w.r.t. it inside the replica function.
        """
        self._check_replicas()
        return self._weights

    def _initial_rows(self, shard):
        """Standard normal rows of shard `shard`, drawn per global block of rows."""
        start = shard * self.shard_size
        stop = min(start + self.shard_size, self.num_classes)
        if stop <= start:
            return tf.zeros([self.shard_size, self.dim])
        blocks = [tf.random.stateless_normal([_INIT_BLOCK, self.dim], seed=[self.seed, block])
                  for block in range(start // _INIT_BLOCK, (stop - 1) // _INIT_BLOCK + 1)]
        first = start - (start // _INIT_BLOCK) * _INIT_BLOCK
        rows = tf.concat(blocks, axis=0)[first:first + stop - start]
        return tf.pad(rows, [[0, self.shard_size - (stop - start)], [0, 0]])

    # ---- forward -----------------------------------------------------------------
    def logits(self, global_features, temperature=None):
        """This replica's block of the cosine logits, in replica context.

        Args:
            global_features: [B, d] the all-gathered batch (the same on every
                replica; `keras_ssl.distribute.all_gather` of the local rows).
            temperature: tau; the layer's `temperature` if None.

        Returns:
            [B, S] float32: column c is `cos(w_{shard_offset + c}, x) / tau`;
            padding columns are -inf.
        """
        temperature = self.temperature if temperature is None else temperature
        offset = self.shard_offset
        features = tf.math.l2_normalize(tf.cast(global_features, tf.float32), axis=1)
        rows = tf.math.l2_normalize(tf.convert_to_tensor(self.local_shard()), axis=1)
        logits = tf.matmul(features, rows, transpose_b=True) / temperature
        if self.num_shards * self.shard_size > self.num_classes:
            valid = padding_mask(self.shard_size, offset, self.num_classes)
            logits = tf.where(valid[None, :], logits, tf.constant(-float("inf")))
        return logits

    def call(self, global_features, temperature=None):
        return self.logits(global_features, temperature)

    # ---- updates -----------------------------------------------------------------
    def apply_gradient(self, gradient, learning_rate):
        """One SGD(-momentum) step of this replica's shard, in replica context.

        Args:
            gradient: [S, d] gradient of the loss w.r.t. `local_shard()`
                (dense or IndexedSlices).
            learning_rate: float or scalar tensor.
        """
        self._check_replicas()
        weights = self._weights
        gradient = tf.convert_to_tensor(gradient)
        if self.weight_decay:
            gradient = gradient + self.weight_decay * tf.convert_to_tensor(weights)
        if self._velocity is not None:
            velocity = self.momentum * tf.convert_to_tensor(self._velocity) + gradient
            self._velocity.assign(velocity)
            gradient = velocity
        weights.assign_sub(tf.cast(learning_rate, weights.dtype) * gradient)

    def _write_owned_rows(self, indices, values):
        """Replica context: scatters the rows of global `indices` that this replica owns."""
        positions = indices - self.shard_offset
        owned = (positions >= 0) & (positions < self.shard_size)
        positions = tf.boolean_mask(positions, owned)[:, None]
        # Per-replica variables have no scatter; the shard is rewritten whole
        # (raw-feature initialisation writes every row once, so it costs one
        # extra shard copy per batch of writes, not per row).
        self._weights.assign(tf.tensor_scatter_nd_update(
            tf.convert_to_tensor(self._weights), positions, tf.boolean_mask(values, owned)))
        if self._velocity is not None:
            self._velocity.assign(tf.tensor_scatter_nd_update(
                tf.convert_to_tensor(self._velocity), positions,
                tf.zeros([tf.shape(positions)[0], self.dim])))

    def assign_rows(self, indices, values, gathered=False):
        """Writes rows by global class index (raw-feature initialisation).

        Args:
            indices: [B] int global row indices (distinct).
            values: [B, d] the rows, stored as given (the logits normalise).
            gathered: in replica context, the inputs are already the global
                batch; otherwise each replica's rows are all-gathered first,
                so every replica sees every write and keeps the rows it owns.

        In cross-replica context (e.g. eagerly after a feature pass, under
        `strategy.scope()` or outside it, but not in `strategy.run`)
        `indices`/`values` are global and every replica takes its rows.
        Written rows restart with zero momentum.
        """
        indices = tf.cast(tf.convert_to_tensor(indices), tf.int64)
        values = tf.convert_to_tensor(values, tf.float32)
        if tf.distribute.in_cross_replica_context() or (
                self.num_shards > 1 and not tf.distribute.has_strategy()):
            self._strategy.run(self._write_owned_rows, args=(indices, values))
            return
        if not gathered:
            indices, values = all_gather(indices), all_gather(values)
        self._write_owned_rows(indices, values)

    # ---- whole-matrix views ------------------------------------------------------
    def _gather(self, variable):
        """The unpadded [N, d] matrix of a per-replica variable (a collective; cross-replica)."""
        local = self._strategy.run(lambda: tf.identity(variable.read_value()))
        return self._strategy.gather(local, axis=0)[:self.num_classes]

    def _scatter_full(self, variable, full):
        """Each replica takes its rows of an unpadded [N, d] matrix (cross-replica)."""
        padded = tf.pad(tf.convert_to_tensor(full, variable.dtype),
                        [[0, self.num_shards * self.shard_size - self.num_classes], [0, 0]])
        blocks = tf.reshape(padded, [self.num_shards, self.shard_size, self.dim])
        self._strategy.run(lambda: variable.assign(tf.gather(blocks, replica_id())))

    def read_all(self):
        """The full W [N, d] (padding dropped), gathered from every replica.

        For tests, export and checkpoint checks: at N = 1M this is the whole
        matrix on one device. Call in cross-replica context or eagerly; under
        MultiWorkerMirroredStrategy every worker must call it (a collective).
        """
        return self._gather(self._weights)

    def state_bytes_per_device(self):
        """{device: bytes of classifier state (weights and velocities) placed there}."""
        sizes = {}
        for variable in self.shard_variables + self.velocity_variables:
            sizes[variable.device] = sizes.get(variable.device, 0) + int(
                np.prod(variable.shape)) * variable.dtype.size
        return sizes

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "dim": self.dim,
                "temperature": self.temperature, "momentum": self.momentum,
                "weight_decay": self.weight_decay, "seed": self.seed}

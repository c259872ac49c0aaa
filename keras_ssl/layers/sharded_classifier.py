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
from tensorflow.python.ops import resource_variable_ops
from tensorflow.python.trackable import base as trackable

from keras_ssl.distribute.cross_replica import all_gather
from keras_ssl.distribute.sharded_softmax import padding_mask

# Initial rows are drawn per block of this many global rows, so that W does
# not depend on how many replicas it is split over.
_INIT_BLOCK = 4096


def _plain_variable(initial_value, name, device):
    """A variable on `device` only, whatever strategy scope is active.

    `tf.Variable` under `strategy.scope()` goes through the strategy's
    variable creator and becomes a MirroredVariable (a copy per replica that
    the strategy keeps equal). A shard is one device's own state, so it is
    built as a ResourceVariable directly: subclasses of `tf.Variable` are
    constructed without the creator stack.
    """
    with tf.device(device):
        return resource_variable_ops.ResourceVariable(initial_value, name=name,
                                                      trainable=True)


def _local_devices(strategy):
    """(devices of this process' replicas in replica order, global id of the first)."""
    try:
        devices = tuple(strategy.extended.worker_devices)
    except (RuntimeError, NotImplementedError, AttributeError):
        devices = ()
    if not devices or strategy.num_replicas_in_sync == 1:
        # No strategy (the default one): one shard, placed as TF places it.
        return (None,), 0
    first = 0
    if len(devices) < strategy.num_replicas_in_sync:
        # MultiWorkerMirroredStrategy: replica ids run over the workers in
        # task order, each with the same number of local devices.
        task_id = getattr(getattr(strategy, "cluster_resolver", None), "task_id", 0) or 0
        first = int(task_id) * len(devices)
    return devices, first


class _ShardTable(trackable.Trackable):
    """What a checkpoint holds of the classifier: W [N, d] (and its momentum), unsharded.

    The shards are saved as the full matrix without padding rows, so a
    checkpoint restores into any number of replicas: each replica takes its
    rows of the saved matrix. The price is one N x d concatenation on the
    host at save time (and the whole matrix read at restore), i.e. 512 MB at
    N = 1M, d = 128, float32.
    """

    def __init__(self, layer):
        self._layer = layer

    def _serialize_to_tensors(self):
        layer = self._layer
        tensors = {"weights": layer._concat(layer._shard_weights)}
        if layer._velocities:
            tensors["momentum"] = layer._concat(layer._velocities)
        return tensors

    def _restore_from_tensors(self, restored_tensors):
        layer = self._layer
        ops = []
        for key, shards in (("weights", layer._shard_weights), ("momentum", layer._velocities)):
            if key not in restored_tensors or not shards:
                continue
            full = restored_tensors[key]
            if full.shape[0] != layer.num_classes or full.shape[1] != layer.dim:
                raise ValueError(
                    f"The checkpoint's classifier {key} is {tuple(full.shape)}; this "
                    f"ShardedClassifier holds ({layer.num_classes}, {layer.dim}).")
            ops.extend(variable.assign(layer._rows_of(full, shard))
                       for shard, variable in layer._local_shards(shards))
        return tf.group(ops)


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
    `shard_size` = ceil(N / R), as one variable on replica r's device
    (`shard_variables[r].device`), so each device holds S x d weights (and,
    with momentum, S x d velocities), not N x d. When R does not divide N the
    last shard ends with R * S - N zero padding rows: `logits` sets their
    columns to -inf, so they never win a softmax or a top-K, get no gradient
    and stay zero. Shard r belongs to the replica with
    `replica_id_in_sync_group == r`; under MultiWorkerMirroredStrategy a
    process creates only its own replicas' shards (worker w's local replica
    j is replica w * local + j). MirroredStrategy traces the replica
    function once per replica with a constant replica id, which selects the
    shard variable; TPUStrategy traces it once with a runtime id and is not
    supported (it would need W as one TPU-replicated variable); `logits`
    raises there.

    Update. The shards are plain per-device variables, not MirroredVariables
    (those are one value copied to every replica, kept equal by summing the
    replicas' gradients; here every replica holds different rows). Keras
    optimizers under MirroredStrategy expect mirrored variables and
    all-reduce gradients across replicas, so the layer does not go through
    them: in the replica function, take the gradient of the loss w.r.t.
    `local_shard()` and call `apply_gradient(gradient, learning_rate)`,
    which updates this replica's shard only, with no collective:
    `v <- momentum * v + g + weight_decay * w; w <- w - lr * v`. The
    gradient of the sharded softmax (`sharded_softmax_cross_entropy`) w.r.t.
    the local logits is already the exact unsharded one, so no cross-replica
    sum is needed. The shards are trainable variables (a tape watches them)
    but not Keras weights: they never appear in `model.trainable_variables`,
    so a Keras optimizer never sees them.

    Rows absent from the batch. With a softmax over all N classes every row
    gets a gradient each step (`p_ij * x_i / B` through the normaliser), so
    the update is dense: momentum moves every row every step, consistently
    with the unsharded computation. Weight decay defaults to 0: cosine
    logits do not depend on a row's norm, so decay would only shrink the rows
    of images seen once an epoch and raise their effective learning rate.

    Checkpoints. `tf.train.Checkpoint(classifier=layer)` saves W (and the
    velocities) as ONE unpadded [N, d] tensor assembled from the shards (see
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
        devices, first = _local_devices(strategy)
        # Not attribute-tracked: the checkpoint saves them through `_ShardTable`
        # as one unsharded matrix, not one entry per shard.
        shard_ids = range(first, first + len(devices))
        object.__setattr__(self, "_shard_ids", tuple(shard_ids))
        object.__setattr__(self, "_shard_weights", tuple(
            _plain_variable(self._initial_rows(shard), f"shard_{shard}", device)
            for shard, device in zip(shard_ids, devices)))
        object.__setattr__(self, "_velocities", tuple(
            _plain_variable(tf.zeros([self.shard_size, self.dim]), f"velocity_{shard}", device)
            for shard, device in zip(shard_ids, devices)) if self.momentum else ())
        self.table = _ShardTable(self)
        self.built = True

    # ---- layout ------------------------------------------------------------------
    @property
    def shard_variables(self):
        """This process' shard variables, in shard (= replica) order."""
        return self._shard_weights

    @property
    def velocity_variables(self):
        """Their momentum buffers (empty with momentum 0)."""
        return self._velocities

    def _local_shards(self, variables):
        return zip(self._shard_ids, variables)

    def _replica_shard(self):
        """This replica's shard id, a Python int (see the class docstring)."""
        context = tf.distribute.get_replica_context()
        if context is None:
            raise RuntimeError("ShardedClassifier's per-replica methods run in replica "
                               "context (inside strategy.run), or without a strategy.")
        if self.num_shards != context.num_replicas_in_sync:
            raise ValueError(f"This classifier was built with {self.num_shards} shards "
                             f"but runs on {context.num_replicas_in_sync} replicas.")
        replica = tf.get_static_value(context.replica_id_in_sync_group)
        if replica is None:
            raise NotImplementedError(
                "ShardedClassifier needs a replica id known while tracing (Mirrored, "
                "MultiWorkerMirrored); TPUStrategy traces one program for all replicas.")
        return int(replica)

    def _index(self, shard):
        return self._shard_ids.index(shard)

    @property
    def shard_offset(self):
        """Global index of this replica's first row (a Python int; replica context)."""
        return self._replica_shard() * self.shard_size

    def local_shard(self):
        """This replica's shard variable [S, d] (take the loss' gradient w.r.t. it)."""
        return self._shard_weights[self._index(self._replica_shard())]

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
        shard = self.local_shard()
        features = tf.math.l2_normalize(tf.cast(global_features, tf.float32), axis=1)
        rows = tf.math.l2_normalize(tf.convert_to_tensor(shard), axis=1)
        logits = tf.matmul(features, rows, transpose_b=True) / temperature
        if offset + self.shard_size > self.num_classes:
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
        index = self._index(self._replica_shard())
        weights = self._shard_weights[index]
        gradient = tf.convert_to_tensor(gradient)
        if self.weight_decay:
            gradient = gradient + self.weight_decay * weights
        if self._velocities:
            velocity = self._velocities[index]
            velocity.assign(self.momentum * velocity + gradient)
            gradient = velocity
        weights.assign_sub(tf.cast(learning_rate, weights.dtype) * gradient)

    def assign_rows(self, indices, values, gathered=False):
        """Writes rows by global class index (raw-feature initialisation).

        Args:
            indices: [B] int global row indices (distinct).
            values: [B, d] the rows, stored as given (the logits normalise).
            gathered: in replica context, the inputs are already the global
                batch; otherwise each replica's rows are all-gathered first,
                so every replica sees every write and keeps the rows it owns.

        In cross-replica context (e.g. eagerly after a feature pass, under
        `strategy.scope()` or outside it, but not in `strategy.run`) `indices`/`values` are
        global and every local shard takes its rows. Written rows restart
        with zero momentum.
        """
        indices = tf.cast(tf.convert_to_tensor(indices), tf.int64)
        values = tf.convert_to_tensor(values, tf.float32)
        context = tf.distribute.get_replica_context()
        if context is None or (context.num_replicas_in_sync == 1 and self.num_shards > 1):
            # Cross-replica context, or eager code outside the strategy's scope.
            shards = range(len(self._shard_weights))
        else:
            if not gathered:
                indices, values = all_gather(indices), all_gather(values)
            shards = [self._index(self._replica_shard())]
        for index in shards:
            offset = self._shard_ids[index] * self.shard_size
            positions = indices - offset
            owned = (positions >= 0) & (positions < self.shard_size)
            positions = tf.boolean_mask(positions, owned)[:, None]
            with tf.device(self._shard_weights[index].device):
                self._shard_weights[index].scatter_nd_update(
                    positions, tf.boolean_mask(values, owned))
                if self._velocities:
                    self._velocities[index].scatter_nd_update(
                        positions, tf.zeros([tf.shape(positions)[0], self.dim]))

    # ---- whole-matrix views ------------------------------------------------------
    def _concat(self, variables):
        if len(variables) != self.num_shards:
            raise NotImplementedError(
                f"This process holds {len(variables)} of the {self.num_shards} shards "
                f"(multi-worker); assembling W needs every worker's shards.")
        with tf.device("/cpu:0"):
            return tf.concat([tf.convert_to_tensor(v) for v in variables],
                             axis=0)[:self.num_classes]

    def _rows_of(self, full, shard):
        """Shard `shard`'s rows [S, d] of an unpadded [N, d] matrix (padding zero)."""
        start = min(shard * self.shard_size, self.num_classes)
        rows = full[start:start + self.shard_size]
        return tf.pad(rows, [[0, self.shard_size - rows.shape[0]], [0, 0]])

    def read_all(self):
        """The full W [N, d] (padding dropped), assembled on the host CPU.

        For tests, export and checkpoint checks: at N = 1M this is the whole
        matrix on one device. Call in cross-replica context or eagerly.
        """
        return self._concat(self._shard_weights)

    def state_bytes_per_device(self):
        """{device: bytes of classifier state (weights and velocities) placed there}."""
        sizes = {}
        for variable in self._shard_weights + self._velocities:
            sizes[variable.device] = sizes.get(variable.device, 0) + int(
                np.prod(variable.shape)) * variable.dtype.size
        return sizes

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "dim": self.dim,
                "temperature": self.temperature, "momentum": self.momentum,
                "weight_decay": self.weight_decay, "seed": self.seed}

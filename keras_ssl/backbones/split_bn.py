"""BatchNorm over sub-batches: the single-GPU stand-in for MoCo's shuffled BatchNorm.

MoCo shuffles the keys across GPUs so that the batch statistics of a query's
BatchNorm and of its key's come from different images; otherwise the network
can tell the positive key by the statistics it shares with the query. On one
GPU the CIFAR MoCo codes (the MoCo CIFAR demo, ASCL's `model.py` lines 10-30)
emulate 8 GPUs instead: `SplitBatchNorm(num_splits=8)` normalises each of 8
sub-batches with its own statistics, and the key batch is shuffled before the
key encoder.

`SplitBatchNormalization(num_splits=S)` does the same in training mode:

- The *global* batch is cut into S sub-batches of consecutive rows, each
  normalised with its own mean and (biased) variance, with shared gamma/beta.
  With R replicas each replica holds S / R of them (its local rows are
  consecutive rows of the global batch), so a run on R replicas computes what
  a run on one does. S must be divisible by R and the local batch by S / R.
- The moving statistics move towards the mean over the S sub-batches of
  their means and variances, as PyTorch's `SplitBatchNorm` leaves them (it
  updates S copies with the same momentum and averages them). Across replicas
  that mean is all-reduced, so every replica keeps the same values.
- In inference mode it is the plain layer: the moving statistics.

Deviations from the PyTorch layer: its `input.view(-1, C * S, H, W)` puts
row n in sub-batch n mod S (strided), here sub-batch n // (B / S)
(consecutive), so that replicas hold whole sub-batches; over a shuffled
batch either is a random partition. Its running variance is unbiased
(n / (n - 1)); Keras' BatchNormalization keeps the biased one, and so does
this layer (it is a Keras BatchNormalization in every other respect).

The layer has the variables of `keras.layers.BatchNormalization` under the
same names, and its class is also called `BatchNormalization` (exported as
`SplitBatchNormalization`; registered as `keras_ssl>SplitBatchNormalization`),
because Keras' `.weights.h5` and `.keras` files key a layer's variables by
its class name: weights and checkpoints load into a plain backbone, which is
how evaluation and export rebuild the encoder.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_ssl",
                                          name="SplitBatchNormalization")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training statistics are per sub-batch.

    Args:
        num_splits: S, the number of sub-batches of the global batch (8 in
            ASCL's and MoCo's CIFAR code). 1 normalises the whole batch, as
            the plain layer.
        **kwargs: those of `keras.layers.BatchNormalization` (not
            `synchronized` or `renorm`).

    Example:
    >>> layer = SplitBatchNormalization(num_splits=2, momentum=0.0, epsilon=0.0)
    >>> x = tf.constant([[0.0], [2.0], [10.0], [14.0]])
    >>> [float(v) for v in layer(x, training=True)[:, 0]]
    [-1.0, 1.0, -1.0, 1.0]
    >>> float(layer.moving_mean[0]), float(layer.moving_variance[0])  # mean of (1, 12), of (1, 4)
    (6.5, 2.5)
    """

    def __init__(self, num_splits=8, **kwargs):
        if isinstance(num_splits, bool) or not isinstance(num_splits, int) or num_splits < 1:
            raise ValueError(f"SplitBatchNormalization num_splits must be an int >= 1; got "
                             f"{num_splits!r}.")
        if kwargs.get("synchronized"):
            raise ValueError("SplitBatchNormalization normalises sub-batches; synchronized "
                             "BatchNorm normalises the global batch: pick one.")
        if kwargs.get("renorm"):
            raise ValueError("SplitBatchNormalization does not implement batch renormalization.")
        super().__init__(**kwargs)
        self.num_splits = num_splits

    def local_splits(self):
        """The sub-batches each replica holds: num_splits / replicas in sync."""
        context = tf.distribute.get_replica_context()
        replicas = 1 if context is None else context.num_replicas_in_sync
        if self.num_splits % replicas:
            raise ValueError(
                f"split_batch_norm={self.num_splits} sub-batches cannot be shared by "
                f"{replicas} replicas: use a multiple of {replicas}, so each replica "
                "holds whole sub-batches.")
        return self.num_splits // replicas

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable):
            return super().call(inputs, training=training, mask=mask)
        if mask is not None:
            raise ValueError("SplitBatchNormalization does not take a mask.")
        splits = self.local_splits()
        # As the plain layer: statistics in float32 at least (float16 overflows).
        x = tf.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        rank = len(x.shape)
        axis = self.axis % rank
        if axis == 0:
            raise ValueError("SplitBatchNormalization splits axis 0, the batch; it cannot "
                             "also be the normalised axis.")
        rows = x.shape[0]
        if rows is not None and rows % splits:
            raise ValueError(
                f"SplitBatchNormalization: a batch of {rows} rows on this replica cannot "
                f"be cut into {splits} equal sub-batches (num_splits={self.num_splits}); "
                "use a (local) batch size divisible by it.")
        checks = [] if rows is not None else [tf.debugging.assert_equal(
            tf.shape(x)[0] % splits, 0,
            message=f"SplitBatchNormalization: the local batch is not divisible by "
                    f"{splits} sub-batches (num_splits={self.num_splits}).")]
        with tf.control_dependencies(checks):
            # [splits, rows / splits, ...]: sub-batch s holds consecutive rows.
            grouped = tf.reshape(x, tf.concat([[splits, -1], tf.shape(x)[1:]], axis=0))
        axes = [1] + [a + 1 for a in range(1, rank) if a != axis]
        mean, variance = tf.nn.moments(grouped, axes, keepdims=True)
        shape = [1] * (rank + 1)
        shape[axis + 1] = -1
        gamma = tf.reshape(tf.cast(self.gamma, x.dtype), shape) if self.scale else None
        beta = tf.reshape(tf.cast(self.beta, x.dtype), shape) if self.center else None
        outputs = tf.nn.batch_normalization(grouped, mean, variance, beta, gamma, self.epsilon)
        outputs = tf.reshape(outputs, tf.shape(x))

        split_mean = tf.reshape(tf.reduce_mean(mean, axis=0), [-1])
        split_variance = tf.reshape(tf.reduce_mean(variance, axis=0), [-1])
        split_mean, split_variance = _mean_over_replicas(split_mean, split_variance)
        for variable, value in ((self.moving_mean, split_mean),
                                (self.moving_variance, split_variance)):
            value = tf.cast(value, variable.dtype)
            variable.assign(variable * self.momentum + value * (1.0 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "num_splits": self.num_splits}


SplitBatchNormalization = BatchNormalization


def _mean_over_replicas(mean, variance):
    """The replicas' average of their sub-batches' statistics (every replica holds
    the same number of sub-batches, so this is the mean over all of them)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return mean, variance
    both = context.all_reduce(tf.distribute.ReduceOp.MEAN, tf.stack([mean, variance]))
    return both[0], both[1]


def has_split_batch_norm(model):
    """Whether any layer of `model` (nested models included) is a `SplitBatchNormalization`.

    MoCo asks this to shuffle its keys on one replica too: the shuffle puts a
    key in another sub-batch than its query, as the official single-GPU codes
    do before their split BatchNorm.
    """
    return any(isinstance(layer, SplitBatchNormalization)
               or (isinstance(layer, keras.Model) and has_split_batch_norm(layer))
               for layer in model.layers)


def split_batch_norm_layers(model, num_splits):
    """A copy of `model` whose every plain BatchNormalization is a `SplitBatchNormalization`.

    For functional Keras models (nested ones included), e.g. a
    `keras.applications` network; layer names, and so weight paths, are
    kept, and the copy starts from `model`'s weights.

    Example:
    >>> from keras_ssl.backbones import tiny_backbone
    >>> split = split_batch_norm_layers(tiny_backbone(width=4), 2)
    >>> [layer.num_splits for layer in split.layers if "bn" in layer.name]
    [2, 2]
    """
    def clone(layer):
        if isinstance(layer, keras.Model):
            return split_batch_norm_layers(layer, num_splits)
        config = layer.get_config()
        if type(layer) is keras.layers.BatchNormalization:
            return SplitBatchNormalization.from_config({**config, "num_splits": num_splits})
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy

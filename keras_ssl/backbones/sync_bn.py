"""BatchNorm over the global batch: the official codes' SyncBN, exact on one replica.

SwAV (`--sync_bn`), MIRA (`convert_sync_batchnorm`), BYOL (cross-replica BN)
and SimCLR (`global_bn`) normalise every layer of the encoder with the
statistics of the whole batch, not of each device's share. Keras'
`BatchNormalization(synchronized=True)` does that, but it takes the
synchronized path even on one replica, where its variance, E[x^2] - E[x]^2,
differs by rounding from the plain layer's E[(x - mean)^2]: switching it on
changes a single-device run (by up to 1e-4 relative on a ResNet-50's
features). `SyncBatchNormalization` computes exactly what the plain layer
computes on one replica (bit-identical outputs). On several replicas it
reduces in two passes, as one replica computes the whole batch's moments: the
sum and count first, then the squared deviations from the global mean. So a
run on several replicas matches a run on one to float rounding, which the
1-vs-2-replica tests of the methods hold to 2e-5. (One all-reduce per layer,
of sums shifted by the moving mean, traced a 2-replica ResNet-18 step in ~9 s
instead of ~16 s on CPU replicas, but rounded like E[x^2] - E[x]^2 while the
moving means were far from the batch's and broke that tolerance for CMSF; the
unsynchronized step traces in ~4 s.)

The layer is a `keras.layers.BatchNormalization` with `synchronized=True`,
with the same variables under the same names, so weights and checkpoints move
freely between synchronized and plain models. For that its class is also
called `BatchNormalization` (exported as `SyncBatchNormalization`): Keras'
`.weights.h5` and `.keras` files key each layer's variables by its class name
(`batch_normalization_3`), and a `.keras` file tells the two apart by the
registered name, `keras_ssl>BatchNormalization`.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_ssl")
class BatchNormalization(keras.layers.BatchNormalization):
    """`BatchNormalization(synchronized=True)` that is exact with one replica.

    Takes the arguments of `keras.layers.BatchNormalization` (`synchronized`
    is always True). In training, under a `tf.distribute` strategy with
    several replicas in sync, the mean and variance are those of the global
    batch; otherwise the layer computes exactly what the unsynchronized layer
    computes.
    """

    def __init__(self, **kwargs):
        if not kwargs.pop("synchronized", True):
            raise ValueError("SyncBatchNormalization is always synchronized; "
                             "use keras.layers.BatchNormalization instead.")
        super().__init__(synchronized=True, **kwargs)

    def _moments(self, inputs, mask):
        # Overrides keras.layers.BatchNormalization's statistics hook (masked
        # batches keep Keras' own, unsynchronized, computation).
        context = tf.distribute.get_replica_context()
        if mask is not None:
            return super()._moments(inputs, mask)
        if context is None or context.num_replicas_in_sync == 1:
            return keras.ops.moments(inputs, axes=self._reduction_axes)
        return _global_moments(inputs, self._reduction_axes, context)


SyncBatchNormalization = BatchNormalization


def _global_moments(x, axes, context):
    """Mean and variance over `axes` of `x` concatenated across all replicas."""
    local_sum = tf.reduce_sum(x, axis=axes, keepdims=True)
    local_count = tf.ones_like(local_sum) * tf.cast(
        tf.reduce_prod(tf.gather(tf.shape(x), axes)), x.dtype)
    # Sum and count in one all-reduce, then the squared deviations in a second.
    total_sum, count = tf.unstack(context.all_reduce(
        tf.distribute.ReduceOp.SUM, tf.stack([local_sum, local_count])))
    mean = tf.math.divide_no_nan(total_sum, count)
    # As tf.nn.moments: no gradient through the mean inside the variance.
    deviations = tf.reduce_sum(tf.math.squared_difference(x, tf.stop_gradient(mean)),
                               axis=axes, keepdims=True)
    variance = tf.math.divide_no_nan(
        context.all_reduce(tf.distribute.ReduceOp.SUM, deviations), count)
    return tf.squeeze(mean, axes), tf.squeeze(variance, axes)


def synchronize_batch_norm(model):
    """A copy of `model` whose every BatchNormalization is a `SyncBatchNormalization`.

    The counterpart of PyTorch's `SyncBatchNorm.convert_sync_batchnorm` for
    functional Keras models (nested models included), e.g. a
    `keras.applications` network. Layer names, and so weight paths, are kept,
    and the copy starts from `model`'s weights.

    Example:
    >>> from keras_ssl.backbones import tiny_backbone
    >>> synced = synchronize_batch_norm(tiny_backbone(width=4))
    >>> [isinstance(layer, SyncBatchNormalization) for layer in synced.layers
    ...  if "bn" in layer.name]
    [True, True]
    """
    def clone(layer):
        if isinstance(layer, keras.Model):
            return synchronize_batch_norm(layer)
        config = layer.get_config()
        if type(layer) is keras.layers.BatchNormalization:
            return SyncBatchNormalization.from_config({**config, "synchronized": True})
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy

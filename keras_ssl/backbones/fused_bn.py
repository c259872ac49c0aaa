"""BatchNorm that trains through TensorFlow's fused kernel: one op forward, one backward.

Keras 3's `BatchNormalization` computes its training statistics with
`moments` and normalises with separate element-wise ops, so each layer is
about ten ops forward and as many again in the gradient, each a full pass
over the activation. A ResNet-18 at width 0.25 on 32-px images is small
enough that these passes, not the convolutions, take much of a step: BYOL
runs the backbone four times a step (two views, online and target), about
80 BatchNorm layers. `FusedBatchNormV3` (oneDNN's batch normalisation where
oneDNN is on) does the statistics, normalisation and scale in one op and its
gradient in one more.

The maths is Keras': biased batch variance to normalise and to update the
moving variance (the fused op returns the Bessel-corrected variance, which is
scaled back), the same momentum rule. Only the rounding differs (the kernel
sums in its own order), so it is an option (`fused_batch_norm` of the
backbones), not the default. Both classes are also called
`BatchNormalization`, as `SyncBatchNormalization` is, so weight files and
checkpoints move freely between fused and unfused backbones; their `.keras`
registered names tell them apart.

Fused training applies to 4-D NHWC float32 inputs without a mask or renorm,
and, for the synchronized layer, to runs with one replica (several replicas
keep the cross-replica statistics of `SyncBatchNormalization`); everything
else, inference included, is the parent layer's own code.
"""

import keras
import tensorflow as tf

from keras_ssl.backbones import sync_bn


class _FusedTraining:
    """Mixin: `call` takes the fused kernel in training where it can."""

    def call(self, inputs, training=None, mask=None):
        if training and self.trainable and self._can_fuse(inputs, mask):
            return self._fused_training_call(inputs)
        return super().call(inputs, training=training, mask=mask)

    def _can_fuse(self, inputs, mask):
        rank = len(inputs.shape)
        return (mask is None and rank == 4 and self.axis in (-1, rank - 1)
                and not self.renorm and inputs.dtype == tf.float32
                and self.compute_dtype == "float32")

    def _fused_training_call(self, inputs):
        channels = inputs.shape[-1]
        scale = self.gamma if self.scale else tf.ones([channels], inputs.dtype)
        offset = self.beta if self.center else tf.zeros([channels], inputs.dtype)
        outputs, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, scale, offset, epsilon=self.epsilon, data_format="NHWC",
            is_training=True)[:3]
        # The kernel normalises with the biased variance but returns the
        # Bessel-corrected one; Keras keeps the biased one in its moving average.
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), inputs.dtype)
        variance = unbiased_variance * tf.math.divide_no_nan(count - 1.0, count)
        self.moving_mean.assign(self.moving_mean * self.momentum
                                + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum
                                    + variance * (1.0 - self.momentum))
        return outputs


@keras.saving.register_keras_serializable(package="keras_ssl_fused")
class BatchNormalization(_FusedTraining, keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` trained through the fused kernel.

    Takes the arguments of `keras.layers.BatchNormalization`.

    Example:
    >>> layer = FusedBatchNormalization(epsilon=1e-5)
    >>> layer(tf.random.normal([8, 4, 4, 3]), training=True).shape
    TensorShape([8, 4, 4, 3])
    """


FusedBatchNormalization = BatchNormalization


@keras.saving.register_keras_serializable(package="keras_ssl_fused_sync")
class BatchNormalization(_FusedTraining, sync_bn.BatchNormalization):  # noqa: F811
    """`SyncBatchNormalization` whose single-replica training takes the fused kernel.

    With several replicas in sync it normalises with the statistics of the
    global batch, as `SyncBatchNormalization` does.
    """

    def _can_fuse(self, inputs, mask):
        context = tf.distribute.get_replica_context()
        single = context is None or context.num_replicas_in_sync == 1
        return single and super()._can_fuse(inputs, mask)


FusedSyncBatchNormalization = BatchNormalization
del BatchNormalization

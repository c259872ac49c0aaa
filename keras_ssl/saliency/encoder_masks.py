"""Foreground masks from a keras_ssl encoder's own feature maps.

The issue asks for a second mask source so a user can bootstrap masks from a
first pre-training run: the per-position L2 norm over channels of the last
stage's feature map, upsampled bilinearly to the image size, normalised per
image to [0, 1] and thresholded like the spectral masks (`threshold.binarize`,
by default at the map's mean). Activation norms of self-supervised features
concentrate on the object (the observation behind, e.g., Zagoruyko &
Komodakis' activation-based attention maps, ICLR 2017, and the unsupervised
object maps of DINO-style models); at CIFAR scale this is a proxy, like the
spectral masks, for the DeepUSPS² masks of Background Augmentations (Ryali,
Schwab, Morcos, arXiv 2103.12719). [reconstruction: the paper does not use
encoder masks]

Where the spatial map comes from: every keras_ssl backbone (ResNet, tiny,
``keras:<Application>``) is a functional model that ends in a global pooling
layer, and none exposes its pre-pool map, so `spatial_feature_model` builds a
sub-model from the encoder's input to the *input* of that final pooling layer,
which is the last stage's output. The sub-model shares the encoder's layers,
so it has the trained weights and costs nothing to build. A
``keras:<Application>`` backbone wraps the application (which ends in its
own pooling) in an outer model; the sub-model then reaches into the nested
model. An encoder of another shape can name its map's layer with
``layer_name``.
"""

import hashlib

import keras
import numpy as np
import tensorflow as tf

from keras_ssl.saliency import threshold as threshold_lib

_GLOBAL_POOLING = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)


def _outer_input_tensors(model, nested):
    """The tensors of `model`'s graph that feed its nested model `nested`.

    Keras 3 records each call of a layer as a node; a model used once inside
    another has one node, whose inputs live in the outer graph.
    """
    nodes = getattr(nested, "_inbound_nodes", None)
    if not nodes or len(nodes) != 1:
        raise ValueError(
            f"Cannot find where the nested model {nested.name!r} is called in {model.name!r}; "
            "pass layer_name= to choose the spatial feature layer.")
    return nodes[0].input_tensors


def spatial_feature_model(encoder, layer_name=None):
    """A model from the encoder's images to its last stage's spatial map ``[B, h, w, C]``.

    Args:
        encoder: a functional `keras.Model` from images to pooled features,
            as `keras_ssl.backbones.get` builds and a method's ``encoder`` is.
        layer_name: the layer whose output is the spatial map; default: the
            input of the encoder's final global pooling layer.

    Returns:
        A `keras.Model` sharing the encoder's layers (and so its weights).

    Example:

    >>> from keras_ssl.backbones import tiny_backbone
    >>> spatial_feature_model(tiny_backbone(image_size=16, width=4)).output_shape
    (None, 8, 8, 8)
    """
    if layer_name is not None:
        return keras.Model(encoder.inputs, encoder.get_layer(layer_name).output,
                           name=f"{encoder.name}_{layer_name}_map")
    if not isinstance(encoder, keras.Model) or not encoder.layers:
        raise ValueError("spatial_feature_model needs a functional keras.Model; "
                         f"got {type(encoder).__name__}. Pass layer_name= or build the "
                         "feature-map model yourself.")
    last = encoder.layers[-1]
    if isinstance(last, _GLOBAL_POOLING):
        return keras.Model(encoder.inputs, last.input, name=f"{encoder.name}_map")
    if isinstance(last, keras.Model):
        # keras:<Application> backbones: images -> checks -> rescaling -> application.
        inner = spatial_feature_model(last)
        outer_inputs = _outer_input_tensors(encoder, last)
        return keras.Model(encoder.inputs, inner(*outer_inputs), name=f"{encoder.name}_map")
    raise ValueError(
        f"The encoder {encoder.name!r} does not end in a global pooling layer (its last layer "
        f"is {last.name!r}, a {type(last).__name__}); pass layer_name= to name the layer "
        "whose output is the spatial feature map.")


def activation_norm_saliency(feature_maps, image_size):
    """The L2 norm over channels of ``[B, h, w, C]``, upsampled and normalised per image.

    Args:
        feature_maps: float ``[B, h, w, C]``.
        image_size: ``(height, width)`` of the images the maps came from.

    Returns:
        float32 ``[B, height, width]`` in [0, 1].
    """
    feature_maps = tf.cast(feature_maps, tf.float32)  # mixed-precision encoders
    norms = tf.norm(feature_maps, axis=-1, keepdims=True)
    upsampled = tf.image.resize(norms, image_size, method="bilinear")[..., 0]
    return threshold_lib.normalize_per_image(upsampled)


def weights_fingerprint(model):
    """SHA-256 of a model's weights, in order: masks from other weights are other masks."""
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.asarray(weight.numpy())
        digest.update(weight.path.encode() if hasattr(weight, "path") else b"")
        digest.update(str(value.shape).encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


class EncoderMasks:
    """Binary foreground masks from an encoder's activation norms: a mask source.

    The same interface as `spectral.SpectralResidualMasks`: `__call__` gives
    float32 ``[B, H, W]`` masks of 0 and 1, `saliency` the map before the
    threshold, `get_config` what the masks depend on (here including a hash of
    the encoder's weights, so the mask cache rebuilds for another checkpoint).

    Args:
        encoder: a functional `keras.Model` from float images ``[B, H, W, 3]``
            in [0, 1] to pooled features (e.g. from
            `keras_ssl.training.trained_run.restore_encoder`).
        layer_name: see `spatial_feature_model`.
        threshold_rule, mean_factor, threshold: see `threshold.binarize`.

    Example:

    >>> from keras_ssl.backbones import tiny_backbone
    >>> source = EncoderMasks(tiny_backbone(image_size=16, width=4))
    >>> source(tf.zeros([2, 16, 16, 3])).shape
    TensorShape([2, 16, 16])
    """

    name = "encoder"

    def __init__(self, encoder, *, layer_name=None, threshold_rule="mean", mean_factor=1.0,
                 threshold=0.5):
        self.encoder = encoder
        self.layer_name = layer_name
        self.feature_model = spatial_feature_model(encoder, layer_name)
        self.threshold_rule = threshold_rule
        self.mean_factor = mean_factor
        self.threshold = threshold

    @tf.autograph.experimental.do_not_convert
    def saliency(self, images):
        """float32 ``[B, H, W]`` in [0, 1]."""
        images = tf.convert_to_tensor(images, tf.float32)
        # Inference mode: BatchNorm uses its moving statistics, so an image's
        # mask does not depend on the rest of its batch.
        feature_maps = self.feature_model(images, training=False)
        return activation_norm_saliency(feature_maps, tf.shape(images)[1:3])

    def __call__(self, images):
        """float32 ``[B, H, W]`` masks, 1 on the foreground."""
        return threshold_lib.binarize(self.saliency(images), rule=self.threshold_rule,
                                      mean_factor=self.mean_factor, threshold=self.threshold)

    def get_config(self):
        # Hashed on every call (one pass over the weights, ~0.1 s for a
        # ResNet-50), so training the encoder after building the source
        # cannot leave a stale fingerprint.
        return {
            "source": self.name,
            "encoder": self.encoder.name,
            "layer_name": self.layer_name,
            "weights_sha256": weights_fingerprint(self.encoder),
            "threshold_rule": self.threshold_rule,
            "mean_factor": self.mean_factor,
            "threshold": self.threshold,
        }

"""Run a frozen encoder over an evaluation dataset and collect its features."""

import numpy as np
import tensorflow as tf


def _images_as_float(images):
    # Evaluation datasets hand over float32 in [0, 1]; uint8 images are scaled to
    # that range rather than cast, so a raw-pixel dataset cannot silently feed
    # values in [0, 255] to an encoder trained on [0, 1].
    return tf.image.convert_image_dtype(images, tf.float32)


def extract_features(encoder, dataset, *, normalize=True):
    """Encode every example of `dataset` with `encoder` in inference mode.

    The forward pass is one `tf.function` traced once for the whole dataset: the
    batch dimension is left unknown, so the last partial batch reuses the trace.

    Args:
        encoder: a callable (normally a `keras.Model`) mapping float32 images
            [B, H, W, 3] in [0, 1] to features [B, D]. It is called with
            `training=False`, so BatchNorm uses its moving statistics and dropout is off.
        dataset: a `tf.data.Dataset` of dicts with at least "image" [B, H, W, 3]
            (float32 in [0, 1], or uint8) and "label" [B]. Order is preserved.
        normalize: L2-normalise each feature vector, as the kNN protocol expects.

    Returns:
        (features, labels): float32 numpy array [N, D] and int64 numpy array [N].

    Example:
        >>> features, labels = extract_features(method.encoder, test_ds)
    """
    image_spec = dataset.element_spec["image"]
    batch_spec = tf.TensorSpec([None, *image_spec.shape[1:]], image_spec.dtype)

    @tf.function(input_signature=[batch_spec])
    def encode(images):
        features = encoder(_images_as_float(images), training=False)
        # Mixed-precision encoders return float16; distances need float32.
        features = tf.cast(features, tf.float32)
        if normalize:
            features = tf.math.l2_normalize(features, axis=-1)
        return features

    feature_batches, label_batches = [], []
    for batch in dataset:
        feature_batches.append(encode(batch["image"]).numpy())
        label_batches.append(batch["label"].numpy())
    if not feature_batches:
        raise ValueError("extract_features got an empty dataset.")
    features = np.concatenate(feature_batches, axis=0).astype(np.float32)
    labels = np.concatenate(label_batches, axis=0).astype(np.int64).reshape(-1)
    return features, labels

"""Semi-supervised evaluation: fine-tune the encoder on a small labelled subset.

The protocol of SimCLR (Chen et al., 2020, Sec. 4.2) and its successors: take a
class-balanced 1% or 10% of the training labels, fine-tune the whole pre-trained
encoder together with a new linear head, report test top-1.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from keras_ssl.evaluation.features import extract_features
from keras_ssl.evaluation.metrics import top_k_accuracy

# Standard CIFAR fine-tuning augmentation: zero-pad by 4 px, crop back, flip.
_CROP_PADDING = 4


def balanced_label_subset(labels, fraction, *, seed=0):
    """Indices of a class-balanced, reproducible labelled subset.

    One seeded permutation of all indices is drawn; each class keeps its first
    round(fraction * n_c) members in that order (rounded half up, at least one).
    Because the order does not depend on `fraction`, a smaller subset drawn with
    the same seed is contained in a larger one (the 1% labels are among the 10%).

    Args:
        labels: int array [N] of class labels.
        fraction: share of each class to keep, in (0, 1].
        seed: seed of the permutation.

    Returns:
        Sorted int64 numpy array of indices into `labels`.

    Example:
        >>> indices = balanced_label_subset(y_train, 0.01)  # 50 per CIFAR-10 class
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
    labels = np.asarray(labels).reshape(-1)
    order = np.random.default_rng(seed).permutation(labels.shape[0])
    ordered_labels = labels[order]
    chosen = []
    for label in np.unique(labels):
        members = order[ordered_labels == label]
        # floor(x + 0.5) rounds half up; Python's round() would send 2.5 to 2.
        count = max(1, int(math.floor(fraction * members.size + 0.5)))
        chosen.append(members[:count])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _images_as_float(images):
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32)


def _augment(image, seed):
    """Random 4-px-padded crop and horizontal flip with a stateless seed."""
    height, width, channels = image.shape
    padded = tf.pad(image, [[_CROP_PADDING] * 2, [_CROP_PADDING] * 2, [0, 0]])
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    image = tf.image.stateless_random_crop(padded, [height, width, channels], crop_seed)
    return tf.image.stateless_random_flip_left_right(image, flip_seed)


def _training_dataset(images, labels, *, batch_size, augment, seed):
    # Each example draws a stateless seed from a seeded random stream that Keras
    # re-randomises every epoch, so the whole run (shuffle order and crops) is
    # reproducible for a given seed yet differs from epoch to epoch.
    examples = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(
        len(images), seed=seed, reshuffle_each_iteration=True
    )
    randomness = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    examples = tf.data.Dataset.zip((examples, randomness))

    def prepare(example, random_value):
        image, label = example
        if augment:
            image = _augment(image, tf.stack([tf.constant(seed, tf.int64), random_value]))
        return image, label

    return examples.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(
        batch_size
    ).prefetch(tf.data.AUTOTUNE)


def _copy_encoder(encoder):
    # clone_model builds new variables from the config; set_weights then copies
    # the values, so training the copy leaves the caller's encoder untouched.
    copy = keras.models.clone_model(encoder)
    copy.set_weights(encoder.get_weights())
    return copy


def fine_tune(
    encoder,
    train_images,
    train_labels,
    test_dataset,
    *,
    num_classes,
    fraction,
    epochs=30,
    batch_size=64,
    learning_rate=0.01,
    weight_decay=5e-4,
    augment=True,
    seed=0,
):
    """Fine-tunes a copy of `encoder` plus a linear head on a labelled subset.

    Optimisation is SGD (momentum 0.9, Nesterov) with a cosine decay to zero and
    decoupled weight decay; BatchNorm statistics are updated during fine-tuning,
    as in SimCLR's semi-supervised protocol.

    Args:
        encoder: a `keras.Model` (functional, sequential, or serialisable
            subclass) mapping float32 images in [0, 1] to features [B, D]. It is
            copied, never modified.
        train_images: uint8 (0..255) or float (0..1) array [N, H, W, 3].
        train_labels: int array [N].
        test_dataset: evaluation dataset of dicts ("image", "label").
        num_classes: number of classes.
        fraction: share of labels per class kept, see `balanced_label_subset`.
        epochs: passes over the labelled subset.
        batch_size: examples per step.
        learning_rate: peak learning rate of the cosine schedule.
        weight_decay: decoupled weight decay of the optimizer.
        augment: use the random-crop + flip augmentation.
        seed: seed of the subset, the shuffle order, the augmentation and the head.

    Returns:
        dict(top1=float, num_labels=int): test accuracy and labelled-subset size.

    Example:
        >>> fine_tune(encoder, x_train, y_train, test_ds, num_classes=10, fraction=0.1)
    """
    indices = balanced_label_subset(train_labels, fraction, seed=seed)
    images = _images_as_float(np.asarray(train_images)[indices])
    labels = np.asarray(train_labels, np.int64).reshape(-1)[indices]

    backbone = _copy_encoder(encoder)
    inputs = keras.Input(shape=images.shape[1:])
    features = backbone(inputs)
    logits = keras.layers.Dense(
        num_classes, kernel_initializer=keras.initializers.GlorotUniform(seed=seed)
    )(features)
    classifier = keras.Model(inputs, logits, name="fine_tuned_classifier")

    steps_per_epoch = math.ceil(len(images) / batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=max(1, epochs * steps_per_epoch)
    )
    classifier.compile(
        optimizer=keras.optimizers.SGD(
            schedule, momentum=0.9, nesterov=True, weight_decay=weight_decay
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    dataset = _training_dataset(
        images, labels, batch_size=batch_size, augment=augment, seed=seed
    )
    classifier.fit(dataset, epochs=epochs, shuffle=False, verbose=0)

    logits, test_labels = extract_features(classifier, test_dataset, normalize=False)
    return {
        "top1": top_k_accuracy(logits, test_labels, k=1),
        "num_labels": int(len(indices)),
    }

"""A background-shifted test split: a CIFAR-scale proxy of ImageNet-9's "Mixed-Rand".

Background augmentations (Ryali, Schwab, Morcos, arXiv 2103.12719) are meant
to make a representation rely less on the background. The paper measures that
on ImageNet-9 (Xiao et al., 2020): each test image keeps its foreground and
gets the background of a random image of another class ("Mixed-Rand"), and a
model that leans on the background loses accuracy there.

This module builds the same kind of test split from any labelled split and a
foreground mask per image (`keras_ssl.saliency.cached_masks`): image ``i``
keeps its foreground, by its own mask, and is pasted on the background of a
partner image ``p(i)``, whose own foreground is first painted in the mean
colour of its background (`keras_ssl.augment.background.fill_foreground`), so
only one object shows. The partners are a random single-cycle permutation, so
no image keeps its own background. `background_shifted_knn` then scores the
shifted split with the weighted-kNN rule of `KnnMonitor`, against the
training features, so the number sits next to the ordinary kNN top-1.

It is a proxy, not the paper's evaluation. It differs from ImageNet-9 in:

- data: IN-9 is a curated 9-class subset of ImageNet at full resolution;
  here it is whatever split is given, typically CIFAR-10's 10 classes at 32 px;
- foregrounds: IN-9 cuts them along ground-truth bounding boxes; here they
  come from unsupervised masks (spectral residual saliency by default), which
  at 32 px often miss the object or take in background, so some "foreground"
  carries the original background along and some objects lose parts;
- backgrounds: IN-9 takes them from random images of *other* classes; here the
  partner may be of any class, the same one included (about 1 in 10 for ten
  balanced classes), where a background cue still points the right way;
- the partner's object: IN-9's background-only images tile background patches
  over the removed box ("Only-BG-T"); here it is filled with one flat colour,
  the mean of the partner's background pixels.

So absolute numbers are not comparable with the paper's; the gap between
the plain and the shifted kNN top-1 of two encoders on the same split and
masks is what the proxy is for.
"""

import numpy as np
import tensorflow as tf

from keras_ssl.augment.background import as_alpha
from keras_ssl.augment.background import fill_foreground
from keras_ssl.augment.background import paste
from keras_ssl.augment.background import single_cycle_partners
from keras_ssl.data import Split
from keras_ssl.data import eval_dataset
from keras_ssl.evaluation.features import extract_features
from keras_ssl.evaluation.knn import knn_accuracy

# Images composed per step: at 32 px a block is ~12 MB per float copy, and
# only a few copies (the images, the partners, their masks) live at once.
_BLOCK = 1024


def _check_masks(images_shape, masks_shape):
    """Raises a ValueError naming both shapes unless the masks fit the images."""
    masks_shape = tuple(masks_shape)
    images_shape = tuple(images_shape)
    fits = (len(images_shape) == 4 and images_shape[-1] == 3
            and len(masks_shape) in (3, 4) and masks_shape[:3] == images_shape[:3]
            and (len(masks_shape) == 3 or masks_shape[-1] == 1))
    if not fits:
        raise ValueError(f"Masks of shape {masks_shape} do not fit images of shape "
                         f"{images_shape}: need masks [N, H, W] with the images' N, H "
                         "and W (images [N, H, W, 3]).")


def background_shifted_images(images, masks, *, seed=0):
    """Every image's foreground on the background of another image.

    Image ``i`` keeps the pixels under its own mask and takes the rest from
    partner ``partners[i]``, whose own foreground is first painted in the mean
    colour of its background, so no second object shows. The partners are a
    single-cycle permutation (`single_cycle_partners` with the stateless seed
    ``[seed, 0]``), so no image keeps its own background. The composite is
    computed in float in [0, 1] (the masks as alphas, `as_alpha`) a block of
    images at a time, and rounded back to uint8.

    Args:
        images: uint8 ``[N, H, W, 3]``, numpy or tensor, N >= 2.
        masks: uint8 ``[N, H, W]`` (or ``[N, H, W, 1]``), 255 on the
            foreground, as `keras_ssl.saliency.cached_masks` returns them;
            bool or float masks work as in `as_alpha`.
        seed: int, draws the partners; the same seed gives the same output.

    Returns:
        ``(shifted, partners)``: uint8 numpy ``[N, H, W, 3]`` and int numpy
        ``[N]``, the image whose background each row got.

    Example:
        >>> shifted, partners = background_shifted_images(split.images, masks, seed=0)
    """
    images = np.asarray(images)
    masks = np.asarray(masks)
    if images.dtype != np.uint8:
        raise ValueError(f"Images must be uint8 [N, H, W, 3]; got {images.dtype} {images.shape}.")
    _check_masks(images.shape, masks.shape)
    num_images = len(images)
    if num_images < 2:
        # One image has only its own background to take.
        raise ValueError(f"Shifting backgrounds needs at least 2 images; got {num_images}.")

    partners = single_cycle_partners(tf.constant([seed, 0], tf.int32), num_images).numpy()
    shifted = np.empty_like(images)
    for start in range(0, num_images, _BLOCK):
        rows = np.arange(start, min(start + _BLOCK, num_images))
        # Partners come from anywhere in the split, so they are gathered from
        # the uint8 arrays per block rather than kept as a float copy of all N.
        foregrounds = tf.image.convert_image_dtype(images[rows], tf.float32)
        alpha = as_alpha(masks[rows])
        backgrounds = fill_foreground(
            tf.image.convert_image_dtype(images[partners[rows]], tf.float32),
            as_alpha(masks[partners[rows]]))
        composite = paste(foregrounds, alpha, backgrounds)
        # Round rather than truncate (convert_image_dtype would truncate), so
        # pixels pasted unchanged come back to their exact uint8 values.
        shifted[rows] = np.clip(np.round(composite.numpy() * 255.0), 0, 255).astype(np.uint8)
    return shifted, partners.astype(np.int64)


def _decoded_images(split, image_size, batch_size=256):
    """The split's images as uint8 ``[N, S, S, 3]``, through `eval_dataset` when needed."""
    stored_side = None if split.images is None else split.images.shape[1:3]
    if split.images is not None and (image_size is None or tuple(stored_side) == (image_size,) * 2):
        return split.images
    # Streamed (or resized) images are read exactly as evaluation reads them,
    # so the shifted split matches the images the encoder sees elsewhere.
    # eval_dataset divides uint8 by 255, so rounding back restores them exactly.
    batches = [np.round(batch["image"].numpy() * 255.0).astype(np.uint8)
               for batch in eval_dataset(split, batch_size=batch_size, image_size=image_size)]
    return np.concatenate(batches, axis=0)


def background_shifted_split(split, masks, *, seed=0, image_size=None):
    """A labelled split with every image's background swapped (`background_shifted_images`).

    Args:
        split: a `Split`, in memory or streamed; its labels are kept as they are.
        masks: uint8 ``[N, S, S]`` foreground masks in split order (255 on the
            foreground), e.g. ``keras_ssl.saliency.cached_masks(split, ...)``,
            with the split's N and the side of its images (after ``image_size``).
        seed: int, draws the partners.
        image_size: read the images at ``image_size x image_size`` (as
            `eval_dataset` does); None keeps the stored size (streamed images
            must then share one size).

    Returns:
        A new in-memory `Split` with the shifted images and the same labels.

    Raises:
        ValueError: when the masks' shape does not fit the images' (the
            message names both).

    Example:
        >>> masks = cached_masks(source.test, SpectralResidualMasks(), cache_dir,
        ...                      split_name="test", image_size=32)
        >>> shifted = background_shifted_split(source.test, masks, image_size=32)
    """
    masks = np.asarray(masks)
    if len(masks) != len(split):
        # Checked before decoding a streamed split, which may take a while.
        raise ValueError(f"Masks of shape {masks.shape} do not fit a split of {len(split)} "
                         "images: need one mask per image, in split order.")
    images = _decoded_images(split, image_size)
    shifted, _ = background_shifted_images(images, masks, seed=seed)
    return Split(images=shifted, paths=None, labels=split.labels.copy())


def background_shifted_knn(encoder, train_dataset, shifted_split, *, num_classes, k=200,
                           temperature=0.1, batch_size=256):
    """Weighted-kNN top-1 of a background-shifted test split against the training features.

    The same rule as `KnnMonitor.evaluate` (features from `extract_features`,
    scored by `knn_accuracy` with its defaults k=200, T=0.1), so with the same
    bank this number and the monitor's top-1 on the plain test split differ
    only by the backgrounds.

    Args:
        encoder: a callable (normally a `keras.Model`) from float32 images in
            [0, 1] to features, run in inference mode.
        train_dataset: evaluation dataset of dicts ("image", "label") for the
            bank: the training split with the test-time transform, un-augmented.
        shifted_split: the split from `background_shifted_split`, at the image
            size the encoder takes.
        num_classes: number of classes.
        k: neighbours per query.
        temperature: vote temperature.
        batch_size: images per batch when encoding the shifted split.

    Returns:
        float top-1 accuracy in [0, 1].
    """
    bank_features, bank_labels = extract_features(encoder, train_dataset)
    query_features, query_labels = extract_features(
        encoder, eval_dataset(shifted_split, batch_size=batch_size))
    result = knn_accuracy(bank_features, bank_labels, query_features, query_labels,
                          num_classes=num_classes, k=k, temperature=temperature)
    return float(result["top1"])

"""From a saliency map to a binary foreground mask, and how to describe masks.

Both mask sources (`spectral.SpectralResidualMasks` and
`encoder_masks.EncoderMasks`) produce a map that is high on the foreground,
normalise it per image to [0, 1] with `normalize_per_image` and cut it with
`binarize`, so the two sources differ only in the map.

The default rule, a threshold at the map's own mean, is the CPU recipe of
methods-c.md §3 ("spectral-residual saliency thresholded at its mean").
Hou & Zhang (CVPR 2007, §3) cut their object map at three times its mean;
Achanta et al. (CVPR 2009) at twice. `mean_factor` covers those.
"""

import tensorflow as tf

THRESHOLD_RULES = ("mean", "fixed")


def normalize_per_image(maps):
    """Rescales each map of ``[B, H, W]`` to [0, 1] (MATLAB's ``mat2gray``).

    A constant map (no structure at all) becomes zeros rather than NaN.
    """
    low = tf.reduce_min(maps, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(maps, axis=[1, 2], keepdims=True)
    return tf.math.divide_no_nan(maps - low, high - low)


def binarize(maps, *, rule="mean", mean_factor=1.0, threshold=0.5):
    """Binary foreground masks from per-image normalised saliency maps.

    Args:
        maps: float32 ``[B, H, W]`` in [0, 1] (see `normalize_per_image`).
        rule: ``"mean"``: a pixel is foreground when its value exceeds
            ``mean_factor`` times the mean of its own map (the methods-c.md §3
            recipe with factor 1); ``"fixed"``: when it exceeds ``threshold``.
        mean_factor: the multiple of the mean for ``rule="mean"``.
        threshold: the cut for ``rule="fixed"``.

    Returns:
        float32 ``[B, H, W]`` of exactly 0 (background) and 1 (foreground).
        A flat map (no structure: a blank image) gives an all-foreground
        mask, so that background augmentations leave that image as it is
        rather than wiping it. [reconstruction]

    Example:

    >>> maps = tf.constant([[[0.0, 0.2], [0.1, 1.0]]])
    >>> binarize(maps).numpy().tolist()
    [[[0.0, 0.0], [0.0, 1.0]]]
    """
    if rule == "mean":
        cut = mean_factor * tf.reduce_mean(maps, axis=[1, 2], keepdims=True)
    elif rule == "fixed":
        cut = tf.constant(threshold, maps.dtype)
    else:
        raise ValueError(f"Unknown threshold rule {rule!r}; valid: {', '.join(THRESHOLD_RULES)}.")
    flat = tf.reduce_max(maps, axis=[1, 2], keepdims=True) <= tf.reduce_min(
        maps, axis=[1, 2], keepdims=True)
    return tf.cast((maps > cut) | flat, tf.float32)


def foreground_fraction(masks):
    """Share of foreground pixels per mask: float32 ``[B]`` from ``[B, H, W]``.

    Integer masks are read as 0 / nonzero, so both the {0, 1} float masks of
    the sources and the {0, 255} uint8 masks of the cache work.
    """
    masks = tf.convert_to_tensor(masks)
    return tf.reduce_mean(tf.cast(masks > 0, tf.float32), axis=[1, 2])


def mask_iou(first, second):
    """Intersection over union of two batches of masks, float32 ``[B]``.

    Two empty masks agree perfectly (IoU 1). Used to report how far two mask
    sources agree and, in tests, how well a source finds a known object.
    """
    first = tf.convert_to_tensor(first) > 0
    second = tf.convert_to_tensor(second) > 0
    intersection = tf.reduce_sum(tf.cast(first & second, tf.float32), axis=[1, 2])
    union = tf.reduce_sum(tf.cast(first | second, tf.float32), axis=[1, 2])
    return tf.where(union > 0, tf.math.divide_no_nan(intersection, union), 1.0)

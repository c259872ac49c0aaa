"""Batched Gaussian blur with a random standard deviation per image.

Reference: Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations" (ICML 2020), appendix A (kernel 10% of the image side, sigma
in [0.1, 2.0], p=0.5); Grill et al., BYOL (NeurIPS 2020) for p=1.0 / 0.1.
"""

import tensorflow as tf

from keras_ssl.augment import common


def default_kernel_size(image_size):
    """Odd kernel size of about 10% of the image side, at least 3.

    SimCLR and BYOL use ``radius = (image_size // 10) // 2`` and a kernel of
    ``2 * radius + 1``: 23 taps at 224 px, 3 at 32 px. At 16 px (SwAV-style local
    crops of CIFAR) that rule gives one tap, which would make the blur a silent
    no-op, so the radius is at least 1.
    """
    radius = max(1, (int(image_size) // 10) // 2)
    return 2 * radius + 1


def gaussian_kernels(sigmas, kernel_size):
    """Normalised 1-D Gaussian kernels, float32 ``[B, kernel_size]``, one per sigma."""
    radius = kernel_size // 2
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    sigmas = tf.reshape(sigmas, [-1, 1])
    kernels = tf.exp(-tf.square(offsets) / (2.0 * tf.square(sigmas)))
    return kernels / tf.reduce_sum(kernels, axis=1, keepdims=True)


def _reflect_pad(images, radius, axis):
    """Reflect padding (edge pixel not repeated) along one axis.

    Built from slices and a concat: `tf.pad(mode="REFLECT")` is ~1.5x slower.
    """
    length = tf.shape(images)[axis]
    begin_slice = tf.reverse(_slice(images, axis, 1, radius), [axis])
    end_slice = tf.reverse(_slice(images, axis, length - radius - 1, radius), [axis])
    return tf.concat([begin_slice, images, end_slice], axis=axis)


def _slice(images, axis, begin, size):
    """``images[begin:begin + size]`` along ``axis``."""
    begins = [0, 0, 0, 0]
    begins[axis] = begin
    sizes = [-1, -1, -1, -1]
    sizes[axis] = size
    return tf.slice(images, begins, sizes)


def _convolve_axis(images, kernels, axis):
    """Convolves each image along one spatial axis with its own 1-D kernel.

    The kernels are a few taps long (3 at 32 px), so a weighted sum of shifted
    slices of the padded batch is cheaper than a depthwise convolution with
    ``B * C`` channels and needs no transposes.
    """
    kernel_size = kernels.shape[1]
    length = tf.shape(images)[axis]
    padded = _reflect_pad(images, kernel_size // 2, axis)
    # One add_n reads every term once, where a chain of adds would write
    # kernel_size - 1 intermediate batches.
    return tf.add_n(
        [
            _slice(padded, axis, tap, length) * tf.reshape(kernels[:, tap], [-1, 1, 1, 1])
            for tap in range(kernel_size)
        ]
    )


@common.batched
def gaussian_blur(images, seed, *, probability, sigma=(0.1, 2.0), kernel_size=None):
    """Blurs each image with a separable Gaussian of random width, with a probability.

    Each image gets its own sigma from ``U[sigma]`` and so its own kernel; the
    selected images are filtered together, rows then columns, with reflect padding as
    in torchvision's `GaussianBlur`.

    Args:
        images: float32 ``[B, H, W, 3]`` or ``[H, W, 3]`` in ``[0, 1]``.
        seed: int32 tensor of shape ``[2]``.
        probability: chance that an image is blurred.
        sigma: ``(min, max)`` standard deviation in pixels.
        kernel_size: odd number of taps; default `default_kernel_size` of the
            (static) image height.

    Returns:
        float32 images of the same shape in ``[0, 1]``.
    """
    if probability <= 0.0:
        return images
    if kernel_size is None:
        if images.shape[1] is None:
            raise ValueError("gaussian_blur needs a static image height or a kernel_size.")
        kernel_size = default_kernel_size(images.shape[1])
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}.")
    batch_size = tf.shape(images)[0]
    apply_seed, sigma_seed = common.split_seed(seed, 2)
    sigmas = tf.random.stateless_uniform(
        [batch_size], sigma_seed, minval=sigma[0], maxval=sigma[1]
    )

    def blur(subset, indices):
        kernels = gaussian_kernels(tf.gather(sigmas, indices), kernel_size)
        blurred = _convolve_axis(_convolve_axis(subset, kernels, axis=1), kernels, axis=2)
        # The kernel sums to 1 only up to rounding.
        return common.clip_unit(blurred)

    # Only the images that are blurred pay for the filter.
    return common.apply_randomly(images, apply_seed, probability, blur)

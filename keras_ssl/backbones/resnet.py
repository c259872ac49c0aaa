"""ResNet-18/34/50 (He et al., 2016) as functional Keras models.

The CIFAR stem (3x3 convolution, stride 1, no max-pool) is the one every SSL
paper uses on 32-px images (SimCLR appendix B.9, solo-learn, lightly). The width
multiplier scales every convolution, so `width_multiplier=0.25` gives a stem of
16 channels, the size of the CPU protocol.
"""

import keras

from keras_ssl.backbones.fused_bn import FusedBatchNormalization, FusedSyncBatchNormalization
from keras_ssl.backbones.input_size import image_input
from keras_ssl.backbones.split_bn import SplitBatchNormalization
from keras_ssl.backbones.sync_bn import SyncBatchNormalization

_BLOCKS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}

# Same as torchvision and the TF official models: BN momentum 0.1 in PyTorch
# terms is 0.9 here; epsilon 1e-5.
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5


def batch_norm_factory(synchronized_bn=False, split_batch_norm=0, fused_batch_norm=False):
    """`make(name, zero_init=False)`: the backbone's BatchNorm layer for its options.

    Plain `keras.layers.BatchNormalization`, `SyncBatchNormalization`
    (`synchronized_bn`) or `SplitBatchNormalization` over S sub-batches
    (`split_batch_norm=S`); the two options exclude each other.
    `fused_batch_norm` trains the plain and synchronized kinds through
    TensorFlow's fused kernel (`keras_ssl.backbones.fused_bn`; split
    BatchNorm keeps its own). Every kind has the same variables under the
    same names.
    """
    if isinstance(split_batch_norm, bool) or not isinstance(split_batch_norm, int) \
            or split_batch_norm < 0:
        raise ValueError(f"split_batch_norm must be an int >= 0 (0: off); got "
                         f"{split_batch_norm!r}.")
    if split_batch_norm and synchronized_bn:
        raise ValueError("synchronized_bn (statistics over the global batch) and "
                         f"split_batch_norm={split_batch_norm} (statistics per sub-batch) "
                         "exclude each other; set one.")

    def make(name, zero_init=False):
        kwargs = dict(momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON,
                      gamma_initializer="zeros" if zero_init else "ones", name=name)
        if split_batch_norm:
            return SplitBatchNormalization(num_splits=split_batch_norm, **kwargs)
        if synchronized_bn:
            return (FusedSyncBatchNormalization if fused_batch_norm
                    else SyncBatchNormalization)(**kwargs)
        return (FusedBatchNormalization if fused_batch_norm
                else keras.layers.BatchNormalization)(**kwargs)

    return make


def _conv(filters, kernel_size, strides, name):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=name,
    )


def _basic_block(x, filters, strides, name, norm, zero_init_residual):
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv(filters, 1, strides, f"{name}_proj_conv")(x)
        shortcut = norm(f"{name}_proj_bn")(shortcut)
    y = _conv(filters, 3, strides, f"{name}_conv1")(x)
    y = norm(f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(filters, 3, 1, f"{name}_conv2")(y)
    y = norm(f"{name}_bn2", zero_init_residual)(y)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def _bottleneck_block(x, filters, strides, name, norm, zero_init_residual):
    expanded = 4 * filters
    shortcut = x
    if strides != 1 or x.shape[-1] != expanded:
        shortcut = _conv(expanded, 1, strides, f"{name}_proj_conv")(x)
        shortcut = norm(f"{name}_proj_bn")(shortcut)
    y = _conv(filters, 1, 1, f"{name}_conv1")(x)
    y = norm(f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(filters, 3, strides, f"{name}_conv2")(y)
    y = norm(f"{name}_bn2")(y)
    y = keras.layers.ReLU(name=f"{name}_relu2")(y)
    y = _conv(expanded, 1, 1, f"{name}_conv3")(y)
    y = norm(f"{name}_bn3", zero_init_residual)(y)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def resnet(
    depth=18,
    *,
    image_size=32,
    cifar_stem=True,
    width_multiplier=1.0,
    synchronized_bn=False,
    split_batch_norm=0,
    any_image_size=False,
    zero_init_residual=False,
    fused_batch_norm=False,
    name=None,
):
    """Builds a ResNet that maps float images in [0, 1] to pooled features.

    Args:
        depth: 18, 34 or 50.
        image_size: side of the square input; the model is built for it so that
            every variable has its full shape before training starts.
        cifar_stem: 3x3 stride-1 convolution and no max-pool (for 32-px images)
            instead of the ImageNet 7x7 stride-2 convolution and max-pool.
        width_multiplier: scales every convolution's channels (64 -> 16 at 0.25).
        synchronized_bn: every BatchNorm takes its training statistics over
            the global batch (all replicas) instead of each replica's own
            (`SyncBatchNormalization`: the same variables and names, and
            exactly the plain layers' outputs with one replica).
        split_batch_norm: S > 0 makes every BatchNorm a
            `SplitBatchNormalization` over S sub-batches of the global batch
            (the single-GPU stand-in for shuffled BatchNorm of MoCo's and
            ASCL's CIFAR code); the same variables and names. Excludes
            `synchronized_bn`.
        any_image_size: declare the input as `[batch, None, None, 3]`, so
            images of other sizes (multi-crop's local crops) are accepted too.
            No variable depends on the spatial size, so the weights are the same.
        zero_init_residual: start the last BatchNorm scale of every residual
            branch at 0, so each block begins as its shortcut (Goyal et al.,
            2017; torchvision's `zero_init_residual`, which MIRA's official
            encoder turns on). Only the initial weights change.
        fused_batch_norm: train every BatchNorm through TensorFlow's fused
            kernel (`keras_ssl.backbones.fused_bn`): the same maths and
            weights, rounded differently, and faster on CPUs (fewer, larger
            ops; most of all where oneDNN has no AVX-512). Not with
            `split_batch_norm`, which keeps its own layer.
        name: model name; defaults to `resnet{depth}`.

    Returns:
        A `keras.Model` from `[batch, image_size, image_size, 3]` (any side
        with `any_image_size`) to `[batch, features]` (512 * width for
        ResNet-18/34, 2048 * width for 50).

    Example:
    >>> model = resnet(18, width_multiplier=0.25)
    >>> model.output_shape
    (None, 128)
    """
    key = f"resnet{depth}"
    if key not in _BLOCKS:
        raise ValueError(f"ResNet depth must be one of 18, 34, 50; got {depth}.")
    norm = batch_norm_factory(synchronized_bn, split_batch_norm, fused_batch_norm)
    kind, repeats = _BLOCKS[key]
    block = _basic_block if kind == "basic" else _bottleneck_block
    stem_width = max(1, int(round(64 * width_multiplier)))

    images = image_input(image_size, any_image_size=any_image_size)
    # Inputs are in [0, 1]; per-channel standardisation with ImageNet
    # statistics is what every reference recipe does.
    x = keras.layers.Normalization(
        mean=(0.485, 0.456, 0.406), variance=(0.229**2, 0.224**2, 0.225**2),
        name="standardize",
    )(images)
    if cifar_stem:
        x = _conv(stem_width, 3, 1, "stem_conv")(x)
        x = norm("stem_bn")(x)
        x = keras.layers.ReLU(name="stem_relu")(x)
    else:
        x = _conv(stem_width, 7, 2, "stem_conv")(x)
        x = norm("stem_bn")(x)
        x = keras.layers.ReLU(name="stem_relu")(x)
        x = keras.layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    for stage, count in enumerate(repeats):
        filters = stem_width * 2**stage
        for index in range(count):
            strides = 2 if (index == 0 and stage > 0) else 1
            x = block(x, filters, strides, f"stage{stage + 1}_block{index + 1}",
                      norm, zero_init_residual)
    features = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(images, features, name=name or key)

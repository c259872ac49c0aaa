"""Backbones: ResNet-18/34/50, any keras.applications model, a tiny test CNN."""

import keras

from keras_ssl.backbones.fused_bn import FusedBatchNormalization, FusedSyncBatchNormalization
from keras_ssl.backbones.input_size import (MinimumImageSide, accept_any_image_size,
                                            image_input, smallest_image_side)
from keras_ssl.backbones.resnet import batch_norm_factory, resnet
from keras_ssl.backbones.split_bn import (SplitBatchNormalization, has_split_batch_norm,
                                          split_batch_norm_layers)
from keras_ssl.backbones.sync_bn import SyncBatchNormalization, synchronize_batch_norm
from keras_ssl.backbones.tiny import tiny_backbone

_RESNETS = {"resnet18": 18, "resnet34": 34, "resnet50": 50}


def available():
    """Names `get` accepts (plus `keras:<ApplicationName>`)."""
    return sorted(_RESNETS) + ["tiny", "keras:<keras.applications model>"]


def get(name, *, image_size=32, width_multiplier=1.0, cifar_stem=None,
        synchronized_bn=False, split_batch_norm=0, any_image_size=False,
        zero_init_residual=False, fused_batch_norm=False):
    """Builds a backbone by name: images in [0, 1] -> pooled features.

    Args:
        name: "resnet18", "resnet34", "resnet50", "tiny", or
            "keras:<Name>" for any `keras.applications` model (random weights,
            global average pooling, no top).
        image_size: side of the square input images.
        width_multiplier: channel multiplier (ResNets and tiny only).
        cifar_stem: ResNet stem for small images; default: image_size <= 64.
        synchronized_bn: every BatchNorm of the backbone takes its training
            statistics over the global batch when the run has several
            replicas (`SyncBatchNormalization`, as the official SwAV, MIRA,
            BYOL and SimCLR codes do); with one replica the outputs are
            exactly those of the plain backbone, and the weight names are the
            same either way, so checkpoints load into both.
        split_batch_norm: S > 0: every BatchNorm of the backbone normalises
            each of S sub-batches of the global batch (consecutive rows) with
            its own statistics in training (`SplitBatchNormalization`, the
            single-GPU stand-in for shuffled BatchNorm in MoCo's and ASCL's
            CIFAR code); with R replicas each holds S / R of them, so S must
            be divisible by R and the local batch by S / R. Inference uses
            the moving statistics as usual, and the weight names are those of
            the plain backbone. Excludes `synchronized_bn`; 0: off.
        any_image_size: the model also accepts images of other sides (input
            `[B, None, None, 3]`), as multi-crop methods need for their local
            crops; `image_size` still picks the default stem. A `.keras` file
            of the model keeps this (`accept_any_image_size` does not).
        zero_init_residual: ResNets only: each residual branch starts at
            zero (its last BatchNorm scale is 0), as torchvision's option.
    """
    batch_norm_factory(synchronized_bn, split_batch_norm)  # checks the two options
    if zero_init_residual and name not in _RESNETS:
        raise ValueError(f"zero_init_residual is a ResNet option; backbone {name!r} "
                         "has no residual branches to zero.")
    if fused_batch_norm and name not in _RESNETS:
        raise ValueError(f"fused_batch_norm is a ResNet option; backbone {name!r} "
                         "builds its own BatchNorm layers.")
    if name in _RESNETS:
        if cifar_stem is None:
            cifar_stem = image_size <= 64
        return resnet(_RESNETS[name], image_size=image_size, cifar_stem=cifar_stem,
                      width_multiplier=width_multiplier,
                      synchronized_bn=synchronized_bn, split_batch_norm=split_batch_norm,
                      any_image_size=any_image_size, zero_init_residual=zero_init_residual,
                      fused_batch_norm=fused_batch_norm)
    if name == "tiny":
        norm = ("split_batch" if split_batch_norm
                else "sync_batch" if synchronized_bn else "batch")
        return tiny_backbone(image_size=image_size,
                             width=max(1, int(round(8 * width_multiplier))),
                             norm=norm, num_splits=split_batch_norm or 8,
                             any_image_size=any_image_size)
    if name.startswith("keras:"):
        return _keras_application(name[len("keras:"):], image_size, any_image_size,
                                  synchronized_bn, split_batch_norm)
    raise ValueError(
        f"Unknown backbone {name!r}; valid: {', '.join(available())}.")


def _keras_application(app_name, image_size, any_image_size=False,
                       synchronized_bn=False, split_batch_norm=0):
    application = getattr(keras.applications, app_name, None)
    if application is None or not callable(application):
        raise ValueError(f"keras.applications has no model named {app_name!r}.")
    images = image_input(image_size, any_image_size=any_image_size)
    # keras.applications models expect their own input scaling (most take
    # [0, 255] and normalise inside); ours are in [0, 1].
    # The application checks its own input too, so it gets the same shape as
    # ours. With None sides it skips its minimum-size check, and its padding
    # (computed from the sides it is built for) can then shrink a small
    # image's map to nothing: the smallest side the network as built takes
    # is checked by a MinimumImageSide layer (keras:MobileNetV3Small: 31 px).
    trunk = application(include_top=False, weights=None, pooling="avg",
                        input_shape=tuple(images.shape[1:]))
    if synchronized_bn:
        trunk = synchronize_batch_norm(trunk)
    if split_batch_norm:
        trunk = split_batch_norm_layers(trunk, split_batch_norm)
    min_side = smallest_image_side(trunk)
    if image_size < min_side:
        raise ValueError(f"Backbone 'keras:{app_name}' takes images of at least "
                         f"{min_side}x{min_side} px; got image_size={image_size}.")
    checked = MinimumImageSide(min_side, f"keras:{app_name}", name="image_side_check")(images)
    features = trunk(keras.layers.Rescaling(255.0)(checked))
    return keras.Model(images, features, name=app_name.lower())

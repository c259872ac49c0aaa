"""Unsupervised foreground masks for background augmentation, and their cache.

Background Augmentations (Ryali, Schwab, Morcos, arXiv 2103.12719) need one
saliency mask per training image. Two sources share one interface (a callable
from float images ``[B, H, W, 3]`` in [0, 1] to 0/1 masks ``[B, H, W]``, plus
``saliency`` and ``get_config``):

- `SpectralResidualMasks`: training-free, Hou & Zhang (CVPR 2007);
- `EncoderMasks`: the activation norm of a trained keras_ssl encoder's last
  stage, to bootstrap masks from a first pre-training run.

`cached_masks` computes a split's masks once and keeps them beside the run.

Example:
    >>> masks = cached_masks(source.train, SpectralResidualMasks(), "runs/moco/masks",
    ...                      image_size=32)   # uint8 [N, 32, 32], 255 = foreground
"""

from keras_ssl.saliency.cache import MaskFileError
from keras_ssl.saliency.cache import cached_masks
from keras_ssl.saliency.cache import compute_masks
from keras_ssl.saliency.cache import load_mask_file
from keras_ssl.saliency.cache import split_fingerprint
from keras_ssl.saliency.encoder_masks import EncoderMasks
from keras_ssl.saliency.encoder_masks import spatial_feature_model
from keras_ssl.saliency.spectral import SpectralResidualMasks
from keras_ssl.saliency.spectral import spectral_residual_saliency
from keras_ssl.saliency.threshold import binarize
from keras_ssl.saliency.threshold import foreground_fraction
from keras_ssl.saliency.threshold import mask_iou

__all__ = [
    "EncoderMasks",
    "MaskFileError",
    "SpectralResidualMasks",
    "binarize",
    "cached_masks",
    "compute_masks",
    "foreground_fraction",
    "load_mask_file",
    "mask_iou",
    "spatial_feature_model",
    "spectral_residual_saliency",
    "split_fingerprint",
]

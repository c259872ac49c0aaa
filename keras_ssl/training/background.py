"""A run's background augmentation: its recipe, its masks, and the background-shifted kNN.

`pretrain(background=("rm", "random"), saliency="spectral")` turns on the ops
of `keras_ssl.augment.background_views` with the method preset's
probabilities (`keras_ssl.configs.background`), computes the training split's
foreground masks once into ``MODEL_DIR/masks`` (reused by a resumed run and
rebuilt when the data or the mask source change) and hands them to the
pipeline. `shifted_knn_top1` scores an encoder on the test split with every
image's background swapped (`keras_ssl.evaluation.background_shift`).
"""

import dataclasses
import os

from keras_ssl import configs
from keras_ssl.augment.background_views import BackgroundConfig
from keras_ssl.augment.views import ViewRecipe

# Masks are kept in host memory, one byte per pixel; above this side they are
# computed smaller and the pipeline resizes them to the images (a 64-px mask
# of an ImageNet image is 4 KB, 5 GB for the 1.28M training images).
MAX_MASK_SIDE = 64


def mask_source(spec):
    """The mask source of ``--saliency``: ``spectral`` or ``encoder:MODEL_DIR``."""
    from keras_ssl import saliency

    if spec == "spectral":
        return saliency.SpectralResidualMasks()
    if spec.startswith("encoder:") and spec[len("encoder:"):]:
        from keras_ssl.training.trained_run import restore_encoder

        encoder, *_ = restore_encoder(spec[len("encoder:"):])
        return saliency.EncoderMasks(encoder)
    raise ValueError(f"--saliency={spec!r} is not 'spectral' or 'encoder:MODEL_DIR' (the "
                     "model dir or checkpoint of a keras_ssl pre-training run).")


def background_config(method, ops, probabilities=None):
    """The `BackgroundConfig` of ``--background=ops`` for ``method``.

    Args:
        method: registry name; its preset's probabilities are the defaults.
        ops: op names (`keras_ssl.augment.background_views.OPS`).
        probabilities: `BackgroundConfig` fields that override the preset's
            (``--background_probabilities``).
    """
    return BackgroundConfig.from_ops(ops, **{**configs.background(method),
                                             **(probabilities or {})})


def with_background(recipe, config, method):
    """``recipe`` with background augmentation ``config``; a clear error where it cannot go."""
    if not isinstance(recipe, ViewRecipe):
        raise ValueError(f"--background: {method}'s views ({type(recipe).__name__}) do not "
                         "take background augmentation yet.")
    return dataclasses.replace(recipe, background=config)


def mask_side(image_size):
    return min(int(image_size), MAX_MASK_SIDE)


def split_masks(split, source, *, model_dir, data, image_size, split_name="train"):
    """The split's masks from ``model_dir/masks`` (computed there on the first call)."""
    from keras_ssl.saliency import cached_masks

    return cached_masks(split, source, os.path.join(model_dir, "masks"), split_name=split_name,
                        image_size=mask_side(image_size),
                        data_dir=data if os.path.isdir(data) else None)


def shifted_knn_top1(encoder, train_eval, test, source, *, model_dir, data, image_size,
                     num_classes, k, temperature, batch_size):
    """kNN top-1 of ``encoder`` on the background-shifted test split (seed 0)."""
    from keras_ssl.evaluation import background_shifted_knn, background_shifted_split

    masks = split_masks(test, source, model_dir=model_dir, data=data, image_size=image_size,
                        split_name="test")
    if masks.shape[1] != image_size:
        import tensorflow as tf

        masks = tf.cast(tf.round(tf.image.resize(masks[..., None].astype("float32"),
                                                 [image_size] * 2)[..., 0]), tf.uint8).numpy()
    shifted = background_shifted_split(test, masks, seed=0, image_size=image_size)
    return background_shifted_knn(encoder, train_eval, shifted, num_classes=num_classes, k=k,
                                  temperature=temperature, batch_size=batch_size)

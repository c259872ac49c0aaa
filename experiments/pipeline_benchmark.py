r"""Throughput of the batched augmentation pipeline on CIFAR-10 images.

Measures how many source images per second a `tf.data` pipeline turns into
views (an image is counted once however many views it yields):

    from_tensor_slices -> shuffle -> repeat -> batch(drop_remainder)
        -> map(recipe, AUTOTUNE) -> prefetch

The images are decoded up front with PIL into one uint8 array, so the number
is the cost of augmentation and of tf.data itself, not of JPEG decoding.

Run:

    TF_ENABLE_ONEDNN_OPTS=1 python experiments/pipeline_benchmark.py \
        --data_dir=/work/shared/data/cifar10 --recipes=simclr,multi_crop

The reference on a 2-core AMD EPYC machine: lightly's torchvision transforms
with a PyTorch DataLoader give 1,040 images/s for two 32 px views and 340
images/s for 2x32 + 6x16 multi-crop.
"""

import dataclasses
import functools
import io
import json
import os
import time

import numpy as np
from absl import app
from absl import flags
from PIL import Image

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402  (after the environment defaults)

from keras_ssl import augment  # noqa: E402

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@functools.lru_cache(maxsize=2)
def load_image_folder(data_dir, per_class):
    """Decodes the first ``per_class`` images of every class folder.

    Args:
        data_dir: a folder of class sub-folders, or one holding a ``train/``
            folder of them (the train split is used); local or on any
            TensorFlow file system (``gs://...``).
        per_class: images to take from each class, in file-name order.

    Returns:
        uint8 array ``[N, H, W, 3]`` (cached: measuring several recipes decodes
        the folder once).
    """
    gfile = tf.io.gfile
    train_dir = os.path.join(data_dir, "train")
    if gfile.isdir(train_dir):
        data_dir = train_dir
    images = []
    for class_name in sorted(name.rstrip("/") for name in gfile.listdir(data_dir)):
        class_dir = os.path.join(data_dir, class_name)
        if not gfile.isdir(class_dir):
            continue
        names = sorted(n for n in gfile.listdir(class_dir) if n.lower().endswith(_IMAGE_SUFFIXES))
        for name in names[:per_class]:
            with gfile.GFile(os.path.join(class_dir, name), "rb") as file:
                encoded = io.BytesIO(file.read())
            with Image.open(encoded) as image:
                images.append(np.asarray(image.convert("RGB")))
    if not images:
        raise ValueError(f"No images found under {data_dir}.")
    return np.stack(images)


@functools.lru_cache(maxsize=2)
def spectral_masks(data_dir, per_class):
    """uint8 masks (255 = foreground) of `load_image_folder`'s images, by spectral residual."""
    from keras_ssl.saliency import SpectralResidualMasks

    images = load_image_folder(data_dir, per_class)
    source = SpectralResidualMasks()
    return np.concatenate([
        (np.asarray(source(tf.cast(images[start:start + 1000], tf.float32) / 255.0)) * 255)
        .astype(np.uint8) for start in range(0, len(images), 1000)])


def default_recipe_kwargs(recipe_name, image_size):
    """Recipe arguments for a benchmark at ``image_size``: multi-crop is
    ``2 x image_size`` global + ``6 x image_size // 2`` local crops."""
    if recipe_name == "multi_crop":
        return {"global_size": image_size, "local_size": image_size // 2}
    return {"image_size": image_size}


def build_pipeline(images, recipe, *, batch_size, seed=0, masks=None):
    """The benchmarked `tf.data` pipeline; yields tuples of views.

    Each batch gets its own augmentation seed ``[seed, batch number]``, so the
    pipeline is reproducible however many map calls run in parallel. With
    ``masks`` (a recipe with background augmentation) each image's mask
    travels with it.
    """
    dataset = tf.data.Dataset.from_tensor_slices(images if masks is None else (images, masks))
    dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=True)
    dataset = dataset.enumerate()

    def make_views(step, batch):
        batch_seed = tf.stack([tf.constant(seed, tf.int32), tf.cast(step, tf.int32)])
        if masks is None:
            return recipe(batch, batch_seed)
        return recipe(batch[0], batch_seed, masks=batch[1])

    dataset = dataset.map(make_views, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def measure_pipeline(
    recipe_name,
    data_dir,
    *,
    per_class=1000,
    batch_size=256,
    image_size=32,
    seconds=20,
    warmup_seconds=5,
    recipe_kwargs=None,
    background=None,
):
    """Measures the images per second of the augmentation pipeline.

    Args:
        recipe_name: a key of `keras_ssl.augment.RECIPES`.
        data_dir: CIFAR-10-style image folder (see `load_image_folder`).
        per_class: images decoded per class.
        batch_size: images per batch.
        image_size: side of the (global) views.
        seconds: length of the timed run.
        warmup_seconds: untimed run first, so that tracing and AUTOTUNE settle.
        recipe_kwargs: overrides of the recipe factory's arguments, e.g.
            ``{"blur": False}``.
        background: a `BackgroundConfig` to add to the recipe; the images'
            masks (spectral residual, computed once, untimed) then travel with them.

    Returns:
        A dict with ``images_per_s``, ``images_per_cpu_s``, ``batches``, ``seconds``, the recipe's
        ``num_views`` and ``sizes``, and ``num_images`` in the source array.
    """
    images = load_image_folder(data_dir, per_class)
    kwargs = default_recipe_kwargs(recipe_name, image_size)
    kwargs.update(recipe_kwargs or {})
    recipe = augment.get_recipe(recipe_name, **kwargs)
    masks = None
    if background is not None:
        recipe = dataclasses.replace(recipe, background=background)
        masks = spectral_masks(data_dir, per_class)
    iterator = iter(build_pipeline(images, recipe, batch_size=batch_size, masks=masks))

    def run(duration):
        batches = 0
        start, start_cpu = time.perf_counter(), time.process_time()
        while time.perf_counter() - start < duration:
            next(iterator)
            batches += 1
        return batches, time.perf_counter() - start, time.process_time() - start_cpu

    run(warmup_seconds)
    batches, elapsed, cpu_seconds = run(seconds)
    return {
        "recipe": recipe_name,
        "images_per_s": batches * batch_size / elapsed,
        # Images per second of CPU time used by this process: comparable
        # between runs when other processes share the machine.
        "images_per_cpu_s": batches * batch_size / max(cpu_seconds, 1e-9),
        "batches": batches,
        "seconds": elapsed,
        "num_views": recipe.num_views,
        "sizes": list(recipe.sizes),
        "num_images": int(len(images)),
    }


FLAGS = flags.FLAGS


def _define_flags():
    # Defined only when run as a script, so that importing measure_pipeline
    # from another absl binary does not clash with its flags.
    flags.DEFINE_string("data_dir", "/work/shared/data/cifar10", "Image folder.")
    flags.DEFINE_list("recipes", ["simclr", "multi_crop"], "Recipes to measure.")
    flags.DEFINE_integer("per_class", 1000, "Images decoded per class.")
    flags.DEFINE_integer("batch_size", 256, "Images per batch.")
    flags.DEFINE_integer("image_size", 32, "Side of the (global) views.")
    flags.DEFINE_float("seconds", 20.0, "Length of each timed run.")
    flags.DEFINE_bool("blur", True, "False drops the Gaussian blur from the recipes.")


def main(argv):
    del argv
    for name in FLAGS.recipes:
        result = measure_pipeline(
            name,
            FLAGS.data_dir,
            per_class=FLAGS.per_class,
            batch_size=FLAGS.batch_size,
            image_size=FLAGS.image_size,
            seconds=FLAGS.seconds,
            recipe_kwargs=None if FLAGS.blur else {"blur": False},
        )
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    _define_flags()
    app.run(main)

"""The training data of USL-T: each image, its strong view, and a strong view of a neighbour.

Official (TonyLianLong/UnsupervisedSelectiveLabeling, commit ceaab3c):
`shared/utils/uslt_utils.py:399-473` (`LocalGlobalDataset`) returns, for
image i, the image under the "standard" transform (no augmentation, only
normalisation), the image under the "augment" transform, and one of the
rows of `topk-train-neighbors.npy[i, :21]` (SCAN's 20 nearest neighbours by
cosine similarity plus the image itself, first), drawn uniformly, under the
"augment" transform. The augment transform (`nn_utils_cifar.py`, the
`SCAN-cifar10` entry of `train_dataset_cifar`) is SCAN's strong view:
horizontal flip, `RandomCrop(32)` (the identity on 32 px images), 4 random
RandAugment ops with uniform random magnitudes, and Cutout of a random side
up to 16 px. Batches are shuffled and the last partial batch is dropped.

`strong_view(images, seed)` is the caller's: `scan_strong_view` is the
closest port keras_ssl has (FixMatch's RandAugment ops with 4 ops always
applied, and a fixed 16 px Cutout at 32 px; SCAN's magnitude ranges and its
random Cutout side are not reproduced).
"""

import numpy as np
import tensorflow as tf

from keras_ssl.augment import common
from keras_ssl.augment.geometry import random_flip
from keras_ssl.ops.neighbors import topk_neighbors

# usl-t_pretraining/configs/cifar10_usl-t_pretrain.yaml: NUM_NEIGHBORS.
USLT_NUM_NEIGHBORS = 20


def neighbor_table(features, num_neighbors=USLT_NUM_NEIGHBORS):
    """[N, num_neighbors + 1] int32: each row itself, then its nearest rows by cosine.

    SCAN's `topk-train-neighbors.npy`, which USL-T reads: faiss inner product
    on L2-normalised features, k + 1 results with the row itself first.
    """
    features = tf.math.l2_normalize(tf.convert_to_tensor(features, tf.float32), axis=1)
    indices, _ = topk_neighbors(features, features, int(num_neighbors) + 1)
    indices = indices.numpy()
    # A duplicate image may outrank the row itself; put the row first as SCAN's table has it.
    own = np.arange(len(indices))[:, None]
    others = np.where(indices == own, -1, indices)
    others = np.array([row[row >= 0][:num_neighbors] for row in others], np.int32)
    return np.concatenate([own.astype(np.int32), others], axis=1)


def uslt_dataset(images, neighbors, *, batch_size, strong_view, seed=0):
    """An endless tf.data pipeline of USL-T batches.

    Args:
        images: [N, H, W, 3] uint8 training images (a decoded split's `images`).
        neighbors: [N, k + 1] int neighbour table (`neighbor_table`).
        batch_size: images per batch (official 1024); the last partial batch
            of an epoch is dropped.
        strong_view: `fn(images float32 [B, H, W, 3] in [0, 1], seed int32 [2])
            -> images`, e.g. `scan_strong_view`.
        seed: seeds the shuffling, the neighbour draws and the views.

    Returns:
        A dataset of {"image", "image_augmented", "neighbor"}: float32
        [B, H, W, 3] in [0, 1].
    """
    images = tf.convert_to_tensor(images)
    neighbors = tf.convert_to_tensor(neighbors, tf.int32)
    if int(images.shape[0]) != int(neighbors.shape[0]):
        raise ValueError(f"{images.shape[0]} images but {neighbors.shape[0]} rows of neighbours.")
    if int(images.shape[0]) < batch_size:
        raise ValueError(f"batch_size={batch_size} is more than the {images.shape[0]} images.")
    num_choices = int(neighbors.shape[1])

    def to_views(step, positions):
        batch_seed = tf.stack([tf.cast(seed, tf.int64), step])
        seeds = tf.random.experimental.stateless_split(tf.cast(batch_seed, tf.int32), 3)
        choice = tf.random.stateless_uniform(tf.shape(positions), seeds[0], 0, num_choices,
                                             dtype=tf.int32)
        neighbor_positions = tf.gather(tf.gather(neighbors, positions), choice[:, None],
                                       batch_dims=1)[:, 0]
        clean = tf.cast(tf.gather(images, positions), tf.float32) / 255.0
        neighbor = tf.cast(tf.gather(images, neighbor_positions), tf.float32) / 255.0
        return {"image": clean, "image_augmented": strong_view(clean, seeds[1]),
                "neighbor": strong_view(neighbor, seeds[2])}

    # Shuffled anew every epoch, the partial last batch of each epoch dropped,
    # as the official loader (shuffle=True, drop_last=True).
    positions = (tf.data.Dataset.range(int(images.shape[0]))
                 .shuffle(int(images.shape[0]), seed=seed, reshuffle_each_iteration=True)
                 .batch(batch_size, drop_remainder=True).repeat())
    return (tf.data.Dataset.zip(tf.data.Dataset.counter(), positions)
            .map(to_views, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(2))


def scan_strong_view(images, seed):
    """The closest port of SCAN's strong view: flip, 4 RandAugment ops, Cutout (see the module)."""
    # Imported here: RandAugment belongs to the semi-supervised methods' views.
    from keras_ssl.augment import rand_augment
    flip_seed, augment_seed = common.split_seed(seed, 2)
    return rand_augment(random_flip(images, flip_seed), augment_seed, num_ops=4,
                        probability=1.0)

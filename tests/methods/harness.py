"""One harness every method passes: a real fit step, moved state, 1 vs 2 replicas.

`TINY_CONFIGS` holds the smallest constructor arguments of each registered
method; a method added to the registry without an entry here fails
`test_every_method_has_a_tiny_config`.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_ssl import distribute, methods
from keras_ssl.backbones import tiny_backbone

GLOBAL_BATCH = 8
NUM_EXAMPLES = 32

TINY_CONFIGS = {
    "simclr": dict(projection_dim=8, temperature=0.5),
    "moco_v2": dict(projection_dim=8, queue_size=12, temperature=0.2, momentum=0.9, shuffle_bn=True),
    "npid": dict(num_examples=NUM_EXAMPLES, projection_dim=8),
    "byol": dict(projection_hidden_dim=16, projection_dim=8, prediction_hidden_dim=16,
                 base_momentum=0.9, total_steps=4),
    # CLD: 3 groups over the global batch of 8 (first-3 initialisation).
    "npid_cld": dict(num_examples=NUM_EXAMPLES, projection_dim=8, num_groups=3, group_dim=8),
    "moco_v2_cld": dict(projection_hidden_dim=16, projection_dim=8, queue_size=12,
                        momentum=0.9, num_groups=3, group_dim=8),
    "byol_cld": dict(projection_hidden_dim=16, projection_dim=8, prediction_hidden_dim=16,
                     base_momentum=0.9, total_steps=4, num_groups=3, group_dim=8),
    # SwAV/MIRA: prototypes frozen for step 0 only; SwAV's queue fills on step 0
    # and is used on step 1, so a 2-step run goes through both branches.
    "swav": dict(projection_hidden_dim=16, projection_dim=8, num_prototypes=6,
                 freeze_prototypes_steps=1, queue_length=8, queue_start_steps=0),
    "mira": dict(projection_hidden_dim=16, projection_dim=8, num_prototypes=6, num_iters=5,
                 base_momentum=0.9, total_steps=4, freeze_prototypes_steps=1),
    # InterCLR: 4 clusters of >= 2 in a 32-row bank, clustered from the
    # feature pass before training (`callbacks_for`): both branches from step 0.
    "interclr": dict(num_examples=NUM_EXAMPLES, projection_dim=8, queue_size=12,
                     momentum=0.9, num_clusters=4, min_cluster_size=2, num_negatives=6,
                     negative_pool_size=16, inter_warmup_epochs=0),
    # MSF/CMSF: a 12-row bank, so the second step's 8 targets wrap around it.
    "msf": dict(projection_hidden_dim=16, projection_dim=8, prediction_hidden_dim=16,
                momentum=0.9, queue_size=12, topk=3),
    # CMSF-KM (the 2Q constraint runs in tests/methods/test_msf.py): k-means
    # refreshes the pseudo-labels at the end of each step, so step 1 uses
    # other labels than step 0.
    "cmsf": dict(projection_hidden_dim=16, projection_dim=8, prediction_hidden_dim=16,
                 momentum=0.9, queue_size=12, topk=3, num_examples=NUM_EXAMPLES,
                 constraint="pseudo_label", num_clusters=3, cluster_every_steps=1,
                 cluster_iters=3),
    # Supervised CMSF: the classes come with the batches (index % 3).
    "cmsf_supervised": dict(projection_hidden_dim=16, projection_dim=8,
                            prediction_hidden_dim=16, momentum=0.9, queue_size=12, topk=3),
}

# Sides of the views `train` feeds each method (default: two 16-px views);
# multi-crop methods get two global crops and a smaller local one.
VIEW_SIZES = {"swav": (16, 16, 8), "mira": (16, 16, 8)}


def build(name, seed=0):
    """The method with a tiny sync-BN backbone (identical on 1 and N replicas)."""
    keras.utils.set_random_seed(seed)
    encoder = tiny_backbone(image_size=16, width=4, norm="sync_batch")
    return methods.get(name, encoder=encoder, **TINY_CONFIGS[name])


def batches(num_batches=2, seed=0, image_size=16, sizes=None):
    rng = np.random.default_rng(seed)
    count = num_batches * GLOBAL_BATCH
    views = tuple(rng.uniform(size=(count, size, size, 3)).astype("float32")
                  for size in sizes or (image_size, image_size))
    indices = rng.permutation(NUM_EXAMPLES)[:count].astype("int64")
    return tf.data.Dataset.from_tensor_slices(
        {"views": views, "index": indices, "label": indices % 3}).batch(
            GLOBAL_BATCH, drop_remainder=True)


def mirrored_strategy():
    """MirroredStrategy over the 2 logical CPUs, built as `--strategy=mirrored` builds it.

    make_strategy uses ReductionToOneDevice, not collective ops: a second
    collective MirroredStrategy in the process would reuse the first one's
    collective keys, and the runtime's cached shapes for them abort its steps.
    """
    return distribute.make_strategy("mirrored", cpu_replicas=2)


def train(name, strategy, num_batches=2):
    """Builds under `strategy`, trains on `batches()`; returns (model, history)."""
    with strategy.scope():
        model = build(name)
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    history = model.fit(batches(num_batches, sizes=VIEW_SIZES.get(name)), epochs=1,
                        verbose=0, shuffle=False, callbacks=callbacks_for(model))
    return model, history.history


def weights_by_path(model):
    return {w.path: np.array(w.numpy()) for w in model.weights}


def callbacks_for(model):
    """The callbacks a method needs in `fit`: the epoch feature pass for those that ask."""
    if not model.uses_epoch_features:
        return []
    from keras_ssl.training import EpochFeaturePass
    images = np.random.default_rng(1).uniform(size=(NUM_EXAMPLES, 16, 16, 3)).astype("float32")
    return [EpochFeaturePass(tf.data.Dataset.from_tensor_slices(
        {"image": images, "index": np.arange(NUM_EXAMPLES, dtype="int64")}).batch(8))]

"""One harness every method passes: a real fit step, moved state, 1 vs 2 replicas.

Each method is built at its smallest: the `smoke=True` recipe of its config
module (`keras_ssl.configs`), with a run of `NUM_EXAMPLES` examples, so
adding a method to the registry with a config module is all the harness
needs.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from keras_ssl import configs, distribute, methods
from keras_ssl.backbones import tiny_backbone

GLOBAL_BATCH = 8
NUM_EXAMPLES = 32
# Four steps an epoch: schedules over total_steps (BYOL's and MIRA's tau,
# MIRA's beta) move within the harness' two steps.
RUN = methods.RunContext(num_examples=NUM_EXAMPLES, steps_per_epoch=4, epochs=1)

TINY_CONFIGS = {name: configs.get("cpu_small", name, smoke=True)["method"]
                for name in methods.available()}


def _view_sizes(name):
    """Sides of the views `train` feeds: two 16-px views, plus smoke local crops."""
    views = configs.get("cpu_small", name, smoke=True)["views"]
    return (16, 16) + (views.get("local_size", 8),) * views.get("num_local", 0)


VIEW_SIZES = {name: _view_sizes(name) for name in methods.available()}


def build(name, seed=0):
    """The method with a tiny sync-BN backbone (identical on 1 and N replicas)."""
    keras.utils.set_random_seed(seed)
    encoder = tiny_backbone(image_size=16, width=4, norm="sync_batch")
    return methods.get(name, encoder=encoder, run=RUN, **TINY_CONFIGS[name])


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
    run = fit_run(name, strategy, num_batches)
    return run.model, run.history


@dataclasses.dataclass(frozen=True)
class Run:
    """One fit: the model, its history and copies of its weights (by path) before and after.

    The contract tests share one fit per method; the copies keep what each
    check compares fixed, whatever the others do with the live model later.
    """

    name: str
    model: keras.Model
    history: dict
    before: dict
    after: dict


def fit_run(name, strategy, num_batches=2, data_seed=0):
    """`train`, keeping the weights as built (before `fit`) and as fitted."""
    with strategy.scope():
        model = build(name)
        before = weights_by_path(model)
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
        # The optimizer's variables exist before the step is traced, as Keras
        # makes them itself under a strategy. Without one it defers them to
        # the first trace, and a variable made in a trace makes tf.function
        # trace the whole step a second time: half of a one-replica fit.
        model.optimizer.build(model.trainable_variables)
    history = model.fit(batches(num_batches, seed=data_seed, sizes=VIEW_SIZES.get(name)),
                        epochs=1, verbose=0, shuffle=False, callbacks=callbacks_for(model))
    return Run(name, model, history.history, before, weights_by_path(model))


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

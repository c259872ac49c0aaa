"""The epoch feature pass: features of the whole training set for a method's E-step.

Methods that learn from the whole dataset's structure (InterCLR's initial
clustering, NCC's and IFND's per-epoch k-means, CLIM's neighbour tables) ask,
at epoch boundaries, for one feature per training example, computed without
augmentation. `EpochFeaturePass` runs that pass between epochs: it encodes the
evaluation pipeline of the training split with `method.epoch_features`,
distributed over the strategy's replicas (and workers), gathers the rows,
puts them in the order of the dataset indices and hands them to
`method.on_epoch_features(features, ctx)`.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_ssl.methods.contract import StepContext


class EpochFeaturePass(keras.callbacks.Callback):
    """Runs a method's feature pass before the epochs it asks for.

    Args:
        dataset: batches of the training split without augmentation, dicts
            with "image" (float32 [B, H, W, 3] in [0, 1]) and "index" (int64
            [B], each example's position in the split), as
            `keras_ssl.data.eval_dataset(train_split, ...)` makes them. Every
            index 0..N-1 must appear once.

    Before 0-based epoch `e` (also the first epoch of a resumed run), if
    `method.wants_epoch_features(e)`, the features of every example are
    computed and passed on as an [N, D] float32 tensor whose row i belongs to
    example i. With `fit(verbose=1)` the pass shows its own progress bar.

    Example:
    >>> pass_ = EpochFeaturePass(keras_ssl.data.eval_dataset(train, batch_size=512))
    >>> method.fit(train_stream, epochs=10, steps_per_epoch=steps, callbacks=[pass_])
    """

    # Method.fit checks for a callback with this attribute.
    provides_epoch_features = True

    def __init__(self, dataset):
        super().__init__()
        self.dataset = dataset
        self.passes = []  # epochs before which a pass ran
        self._step = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.model.wants_epoch_features(int(epoch)):
            self.run_pass()
            self.passes.append(int(epoch))

    def run_pass(self):
        """One E-step: the features of the split, handed to the method at its current step."""
        features = self.compute_features()
        ctx = StepContext.at(self.model.optimizer.iterations,
                             steps_per_epoch=self.model.run.steps_per_epoch,
                             seed=self.model.run.seed, training=False)
        self.model.on_epoch_features(tf.constant(features), ctx)

    def compute_features(self):
        """[N, D] float32 NumPy features of the whole split, in index order."""
        strategy = self.model.distribute_strategy
        if self._step is None:
            self._step = self._make_step(strategy)
        batches = strategy.experimental_distribute_dataset(self.dataset)
        verbose = (self.params or {}).get("verbose", 0)
        cardinality = int(self.dataset.cardinality())
        progress = keras.utils.Progbar(cardinality if cardinality > 0 else None,
                                       verbose=1 if verbose == 1 else 0,
                                       unit_name="feature batch")
        features, indices = [], []
        for number, batch in enumerate(batches, start=1):
            batch_features, batch_indices = self._step(batch)
            features.append(batch_features.numpy())
            indices.append(batch_indices.numpy())
            progress.update(number)
        features = np.concatenate(features).astype("float32")
        indices = np.concatenate(indices)
        return _in_index_order(features, indices)

    def _make_step(self, strategy):
        model = self.model

        def encode(batch):
            return tf.cast(model.epoch_features(batch["image"]), tf.float32), batch["index"]

        @tf.function
        def step(batch):
            features, indices = strategy.run(encode, args=(batch,))
            # Every replica's rows, on every worker, in replica order.
            return (strategy.gather(features, axis=0),
                    strategy.gather(indices, axis=0))

        return step


def _in_index_order(features, indices):
    """Rows sorted by dataset index; every index 0..N-1 exactly once."""
    count = len(indices)
    if not np.array_equal(np.sort(indices), np.arange(count)):
        missing = np.setdiff1d(np.arange(count), indices)[:5]
        raise ValueError(
            f"The epoch feature pass saw {count} rows whose indices are not 0..{count - 1} "
            f"once each (e.g. missing {missing.tolist()}); give EpochFeaturePass the "
            "training split's eval_dataset, with every example once.")
    order = np.argsort(indices)
    return features[order]

"""The epoch feature pass: whole-set features, in index order, on 1 and 2 replicas."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.backbones import tiny_backbone
from keras_ssl.methods import RunContext, SimCLR
from keras_ssl.training import EpochFeaturePass
from tests.methods import harness

NUM_EXAMPLES = harness.NUM_EXAMPLES


class RecordsFeatures(SimCLR):
    """SimCLR that asks for the features before epochs 0 and 2 and stores them."""

    uses_epoch_features = True

    def __init__(self, encoder, **kwargs):
        super().__init__(encoder, **kwargs)
        with distribute.replicated_state_scope():
            self.received = self.add_weight(shape=(NUM_EXAMPLES, self.feature_dim),
                                            initializer="zeros", trainable=False,
                                            name="received")
            self.received_at_step = self.add_weight(shape=(), dtype="int64",
                                                    initializer="zeros", trainable=False,
                                                    name="received_at_step")

    def wants_epoch_features(self, epoch):
        return epoch in (0, 2)

    def on_epoch_features(self, features, ctx):
        self.received.assign(features)
        self.received_at_step.assign(ctx.step)


def _images():
    return np.random.default_rng(1).uniform(size=(NUM_EXAMPLES, 16, 16, 3)).astype("float32")


def _eval_dataset():
    # Stored out of index order, with a partial last batch: the pass must sort.
    order = np.random.default_rng(2).permutation(NUM_EXAMPLES)
    return tf.data.Dataset.from_tensor_slices(
        {"image": _images()[order], "index": order.astype("int64")}).batch(5)


class Snapshot(keras.callbacks.Callback):
    """The encoder's inference features of every image at the start of epoch 2."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            self.features = self.model.encoder(_images(), training=False).numpy()


def _train(strategy, epochs):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = RecordsFeatures(tiny_backbone(image_size=16, width=4, norm="sync_batch"),
                                projection_dim=8,
                                run=RunContext(num_examples=NUM_EXAMPLES, steps_per_epoch=2))
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    feature_pass, snapshot = EpochFeaturePass(_eval_dataset()), Snapshot()
    model.fit(harness.batches(2).repeat(), epochs=epochs, steps_per_epoch=2,
              callbacks=[feature_pass, snapshot], verbose=0)
    feature_pass.snapshot = getattr(snapshot, "features", None)
    return model, feature_pass


@pytest.mark.parametrize("replicas", [1, 2])
def test_pass_delivers_whole_set_features_in_index_order(replicas):
    strategy = (tf.distribute.get_strategy() if replicas == 1
                else harness.mirrored_strategy())
    model, feature_pass = _train(strategy, epochs=3)
    assert feature_pass.passes == [0, 2]
    # The pass before epoch 2 saw the weights after 4 steps, in inference mode.
    assert int(model.received_at_step.numpy()) == 4
    np.testing.assert_allclose(model.received.numpy(), feature_pass.snapshot,
                               rtol=1e-5, atol=1e-5)


def test_fit_without_the_pass_names_the_callback():
    model = RecordsFeatures(tiny_backbone(image_size=16, width=4), projection_dim=8)
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="EpochFeaturePass"):
        model.fit(harness.batches(), epochs=1, verbose=0)


def test_pass_refuses_a_dataset_missing_examples():
    model, _ = _train(tf.distribute.get_strategy(), epochs=1)
    partial = EpochFeaturePass(_eval_dataset().take(2))
    partial.set_model(model)
    with pytest.raises(ValueError, match="indices"):
        partial.compute_features()

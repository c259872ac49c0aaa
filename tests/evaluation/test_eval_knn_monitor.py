import keras
import numpy as np
import pytest

from keras_ssl.evaluation import KnnMonitor, extract_features, knn_accuracy

NUM_CLASSES = 3


@pytest.fixture
def setup(eval_dataset, tiny_encoder):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(24, 8, 8, 3)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, size=24)
    # Class-dependent brightness makes the task learnable, so weights move.
    images += 0.3 * labels[:, None, None, None].astype(np.float32)
    encoder = tiny_encoder()
    model = keras.Sequential([encoder, keras.layers.Dense(NUM_CLASSES)])
    model.encoder = encoder  # what a method model exposes
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    bank = eval_dataset(images[:16], labels[:16], batch_size=5)
    queries = eval_dataset(images[16:], labels[16:], batch_size=5)
    return model, encoder, images, labels, bank, queries


def direct_top1(encoder, bank, queries, k):
    bank_features, bank_labels = extract_features(encoder, bank)
    query_features, query_labels = extract_features(encoder, queries)
    return knn_accuracy(bank_features, bank_labels, query_features, query_labels,
                        num_classes=NUM_CLASSES, k=k)["top1"]


class RecordLogs(keras.callbacks.Callback):
    """Placed after the monitor, sees the epoch logs as TensorBoard would."""

    def __init__(self):
        super().__init__()
        self.seen = {}

    def on_epoch_end(self, epoch, logs=None):
        self.seen[epoch] = dict(logs or {})


def test_every_epoch_writes_logs_and_history(setup):
    model, encoder, images, labels, bank, queries = setup
    monitor = KnnMonitor(lambda: model.encoder, bank, queries, NUM_CLASSES, every_epochs=1, k=5)
    recorder = RecordLogs()
    history = model.fit(images, labels, batch_size=8, epochs=2, verbose=0,
                        callbacks=[monitor, recorder])
    assert len(history.history["knn_top1"]) == 2
    assert [epoch for epoch, _ in monitor.history] == [1, 2]
    assert [recorder.seen[e]["knn_top1"] for e in (0, 1)] == history.history["knn_top1"]
    # The last value is the kNN accuracy of the trained encoder, computed directly.
    assert history.history["knn_top1"][-1] == pytest.approx(direct_top1(encoder, bank, queries, 5))
    assert monitor.last_result["top1"] == history.history["knn_top1"][-1]
    assert 0.0 <= monitor.last_result["top5"] <= 1.0


@pytest.mark.parametrize("encoder_fn", ["model", "none"])
def test_every_epochs_zero_evaluates_only_the_last_epoch(setup, encoder_fn):
    model, encoder, images, labels, bank, queries = setup
    chosen = encoder if encoder_fn == "model" else None  # None: model.encoder
    monitor = KnnMonitor(chosen, bank, queries, NUM_CLASSES, every_epochs=0, k=5)
    history = model.fit(images, labels, batch_size=8, epochs=2, verbose=0, callbacks=[monitor])
    assert len(history.history["knn_top1"]) == 1
    assert len(history.history["loss"]) == 2
    assert monitor.history == [(2, history.history["knn_top1"][0])]
    assert history.history["knn_top1"][0] == pytest.approx(direct_top1(encoder, bank, queries, 5))


def test_every_two_epochs_skips_odd_epochs(setup):
    model, _, images, labels, bank, queries = setup
    monitor = KnnMonitor(None, bank, queries, NUM_CLASSES, every_epochs=2, k=5)
    model.fit(images, labels, batch_size=8, epochs=5, verbose=0, callbacks=[monitor])
    # Epochs 2 and 4 by period, epoch 5 because it is the last.
    assert [epoch for epoch, _ in monitor.history] == [2, 4, 5]


def test_early_stop_after_the_monitor_is_caught_at_train_end(setup):
    model, encoder, images, labels, bank, queries = setup

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    monitor = KnnMonitor(None, bank, queries, NUM_CLASSES, every_epochs=0, k=5)
    model.fit(images, labels, batch_size=8, epochs=3, verbose=0,
              callbacks=[monitor, StopAfterFirstEpoch()])
    assert [epoch for epoch, _ in monitor.history] == [1]
    assert monitor.last_result["top1"] == pytest.approx(direct_top1(encoder, bank, queries, 5))


def test_negative_period_is_rejected(setup):
    _, encoder, _, _, bank, queries = setup
    with pytest.raises(ValueError):
        KnnMonitor(encoder, bank, queries, NUM_CLASSES, every_epochs=-1)

"""read_tensorboard_history: epoch scalars back from keras.callbacks.TensorBoard logs."""

import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.evaluation import plot_training_curves, read_tensorboard_history


def _write_epochs(log_dir, scalars):
    """Writes {step: {name: value}} as TensorBoard's epoch_<name> scalars; returns the file."""
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        for step, values in scalars.items():
            for name, value in values.items():
                tf.summary.scalar(f"epoch_{name}", value, step=step)
    writer.close()
    (path,) = [os.path.join(log_dir, name) for name in os.listdir(log_dir)]
    return path


def test_keras_tensorboard_logs_read_back_as_history(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones([8, 3], np.float32), np.zeros([8, 1], np.float32)
    fit = model.fit(x, y, epochs=3, verbose=0,
                    callbacks=[keras.callbacks.TensorBoard(str(tmp_path / "logs"))])
    history = read_tensorboard_history(str(tmp_path / "logs"))
    np.testing.assert_allclose(history["loss"], fit.history["loss"], rtol=1e-6)


def test_sparse_metrics_are_nan_padded_and_a_resumed_run_overrides(tmp_path):
    first = _write_epochs(tmp_path / "a", {0: {"loss": 3.0}, 1: {"loss": 2.5, "knn_top1": 0.2}})
    # A resumed run rewrites epoch 2 and adds epoch 3 in a newer event file.
    second = _write_epochs(tmp_path / "b", {1: {"loss": 2.0}, 2: {"loss": 1.5}})
    logs = tmp_path / "logs" / "train"
    logs.mkdir(parents=True)
    # Event files sort by the creation time in their names, as numbers: as
    # strings "1000000000" would come before "999999999".
    os.rename(first, logs / "events.out.tfevents.999999999.host.1.0.v2")
    os.rename(second, logs / "events.out.tfevents.1000000000.host.2.0.v2")
    history = read_tensorboard_history(str(tmp_path / "logs"))
    assert history["loss"] == [3.0, 2.0, 1.5]
    assert history["knn_top1"][1] == pytest.approx(0.2)
    assert math.isnan(history["knn_top1"][0]) and math.isnan(history["knn_top1"][2])
    plot_training_curves(history, tmp_path / "curves.png")  # NaN-padded kNN is accepted
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_no_logs_is_an_empty_history(tmp_path):
    assert read_tensorboard_history(str(tmp_path / "missing")) == {}

"""Wall time of the training epochs alone."""

import time

import keras


class EpochTimer(keras.callbacks.Callback):
    """Wall time spent in training epochs, without the kNN evaluations.

    Place it before the monitors in the callback list: its `on_epoch_end`
    then stops the clock before they evaluate. An epoch feature pass placed
    after it (at epoch begin) is counted, as it is part of training.

    A run resumed from a step checkpoint starts with the rest of an epoch,
    so throughput is counted in steps, not in epochs times their length.

    Attributes:
        seconds: summed wall time of the epochs run.
        epochs: number of epochs ended (0 for a run resumed after its end;
            the rest of an epoch resumed mid-way counts as one).
        steps: number of training steps run.
    """

    def __init__(self):
        super().__init__()
        self.seconds = 0.0
        self.epochs = 0
        self.steps = 0
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1

    def on_epoch_end(self, epoch, logs=None):
        self.seconds += time.perf_counter() - self._start
        self.epochs += 1

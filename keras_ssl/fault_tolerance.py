"""Training that fails loudly and reproducibly: non-finite loss guard, op determinism.

Checkpointing and resume live in `keras_ssl.checkpointing`; this module holds
what keeps a bad step out of those checkpoints and what makes a resumed run
repeat an uninterrupted one bit for bit.
"""

import math

import keras
import tensorflow as tf


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or Inf.

    Attributes:
        global_step: the optimizer step that produced it (1-based: the
            value of `optimizer.iterations` after that step).
        epoch: the epoch it happened in (1-based, as the progress bar counts).
        loss: the offending value.
    """

    def __init__(self, global_step, epoch, loss):
        self.global_step = global_step
        self.epoch = epoch
        self.loss = loss
        super().__init__(
            f"loss is {loss} at global step {global_step} (epoch {epoch}); training "
            "stopped and no checkpoint was written after that step.")


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises `NonFiniteLossError` at the first batch whose loss is not finite.

    Unlike `keras.callbacks.TerminateOnNaN`, which only sets `stop_training`
    (Keras then still ends the epoch, so an epoch checkpoint callback would
    save the broken weights), raising aborts `fit` at once: no later
    `on_epoch_end` runs and the last checkpoint on disk is the last good one.

    `logs["loss"]` is the epoch's running mean, so one NaN or Inf step makes
    it non-finite from that batch on; checking it costs one scalar read per
    step. Every worker sees the same reduced value, so all of them stop.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)
        if not math.isfinite(loss):
            step = int(self.model.optimizer.iterations.numpy())
            raise NonFiniteLossError(step, getattr(self, "_epoch", 0) + 1, loss)


class InjectNaN(keras.callbacks.Callback):
    """Test aid: makes the loss of global step `step` (1-based) NaN.

    Sets every weight the optimizer updates to NaN just before that step, so
    the NaN goes through the real forward pass, loss and guard, like a
    diverged run's. (One NaN encoder kernel is not enough: ReLU maps NaN to 0
    on CPU, so the loss would stay finite; the heads' last linear layers
    carry it through.)

    Args:
        step: the 1-based optimizer step whose loss must be NaN.
    """

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) + 1 == self.step:
            for weight in self.model.update_variables():
                weight.assign(tf.fill(weight.shape, tf.constant(float("nan"), weight.dtype)))


def enable_determinism(seed):
    """Seeds Python, NumPy, TensorFlow and Keras, and makes TF ops deterministic.

    With this, two runs of the same command compute the same weights bit for
    bit, and so does a run interrupted and resumed from a checkpoint (the
    data stream and augmentations are already pure functions of (seed,
    epoch, batch)). Ops without a deterministic kernel raise instead of
    running nondeterministically. It costs some speed on GPUs; on CPUs it is
    mostly free.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()

"""Preemption: on SIGTERM, checkpoint the step just finished and stop cleanly.

Preemptible machines (spot VMs, TPU pods, batch schedulers) send SIGTERM and
kill the process a while later. `PreemptionCheckpoint` turns that signal into
a step checkpoint, in the format of the step checkpoints of
`keras_ssl.checkpointing.EpochCheckpoint` (it saves through that object), and
a `Preempted` exception that ends `fit`; rerunning the same command resumes
at the saved step, so no finished step is lost.

Two ways of noticing the signal, one checkpoint format:

- Multi-worker runs use TensorFlow's
  `tf.distribute.experimental.PreemptionCheckpointHandler`. One worker gets
  the signal, but all of them must save at the same step (a save is a
  collective operation) and then stop; the handler agrees on that step
  through the cluster's coordination service. It is given our own save
  function (`TerminationConfig(save_fn=...)`), so it writes the same step
  checkpoint as a single-process run, and an `exit_fn` that raises
  `Preempted` instead of `sys.exit`, so the run ends like any other. (On
  GCE CPU VMs TensorFlow's handler declares itself unsupported and does
  nothing; a multi-worker run there is not saved on SIGTERM.)
- Single-process runs use a plain SIGTERM handler and this Keras callback.
  The handler would work there too (its "local mode"), but brings nothing a
  flag cannot do and costs: on construction it asks the GCE metadata server
  whether it runs on Google Cloud (an HTTP request with a 5 s timeout), on a
  GCE CPU machine it only logs that it is unsupported and never watches for
  SIGTERM at all, it saves one step later than it could (it schedules the
  save for the step after the signal's), and it installs a process-wide
  SIGTERM handler it never removes, which a library function called from a
  notebook or a test must not leave behind. The handler here is installed
  only while `fit` runs (`watching()`), and the previous one comes back.

A signal that arrives in the last step of an epoch waits for that epoch's
end: the epoch checkpoint written there is the checkpoint of that step, and
the epoch-end hooks (feature pass bookkeeping, checkpoint) run first.

Outside the training steps (loading data, building the model, the final
evaluation, export) there is no step to save: every finished step is already
in a checkpoint. A command-line run wraps all of it in
`sigterm_stops_the_run()`, so a SIGTERM there raises `Terminated` at once
instead of letting a long evaluation run into the scheduler's SIGKILL, and the
run ends with the same exit status as a preempted one.
"""

import contextlib
import os
import signal
import tempfile
import threading

import keras
import tensorflow as tf
from absl import logging

# The exit status of a preempted train.py: EX_TEMPFAIL of sysexits.h, "a
# temporary failure; the user is invited to retry". Schedulers can restart
# on it; 143 (128 + SIGTERM) would say the process was killed without saving.
PREEMPTED_EXIT_STATUS = 75


class Preempted(Exception):
    """The run was asked to stop (SIGTERM) and saved its position first.

    Attributes:
        global_step: steps done, all saved.
        epoch: the 1-based epoch the run stopped in.
        path: the checkpoint prefix written.
    """

    def __init__(self, global_step, epoch, path):
        self.global_step = global_step
        self.epoch = epoch
        self.path = path
        super().__init__(
            f"preempted at step {global_step} (epoch {epoch}): checkpoint written to "
            f"{path}; rerun the same command to resume.")


def _on_main_thread():
    """Whether this is the main thread, the only one where Python can handle signals."""
    return threading.current_thread() is threading.main_thread()


class Terminated(Exception):
    """SIGTERM arrived outside the training steps, where there is nothing new to save."""

    def __init__(self):
        super().__init__("stopped by SIGTERM outside the training steps")


@contextlib.contextmanager
def sigterm_stops_the_run():
    """Inside the block SIGTERM raises `Terminated`, except within `PreemptionCheckpoint.watching()`.

    `watching()` puts its own handler in place for `fit` and restores this one
    after it, so a signal during training still finishes and saves its step.
    A no-op outside the main thread, where Python cannot handle signals.

    Example:
    >>> with sigterm_stops_the_run():
    ...     result = pretrain(config)  # SIGTERM in the final kNN pass: Terminated
    """
    if not _on_main_thread():
        yield
        return

    def stop(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class PreemptionCheckpoint(keras.callbacks.Callback):
    """Saves a step checkpoint and raises `Preempted` after SIGTERM.

    Place it after the `EpochCheckpoint` in the callback list, so the step
    counters it saves include the step just finished, and run `fit` inside
    `watching()`.

    Args:
        checkpoint: the run's `keras_ssl.checkpointing.EpochCheckpoint`.
        cluster_resolver: the strategy's cluster resolver in a multi-worker
            run (`PreemptionCheckpointHandler` then watches); None for a
            single process.

    Example:
    >>> preemption = PreemptionCheckpoint(checkpoint)
    >>> with preemption.watching():
    ...     method.fit(dataset, epochs=10, callbacks=[checkpoint, preemption])
    """

    def __init__(self, checkpoint, cluster_resolver=None):
        super().__init__()
        self.checkpoint = checkpoint
        self.cluster_resolver = cluster_resolver
        self._requested = threading.Event()
        self._handler = None
        self._stop_at_epoch_end = False
        self._path = None  # the step checkpoint the cluster handler had written

    @property
    def requested(self):
        """Whether a SIGTERM has arrived (single-process path)."""
        return self._requested.is_set()

    @contextlib.contextmanager
    def watching(self):
        """Watches for SIGTERM inside the block; the previous handler returns after it."""
        if self.cluster_resolver is not None:
            # TensorFlow's handler installs a SIGTERM handler and never removes
            # it: the one before it comes back after training.
            main_thread = _on_main_thread()
            previous = signal.getsignal(signal.SIGTERM) if main_thread else None
            with tempfile.TemporaryDirectory() as scratch:
                self._handler = self._cluster_handler(scratch)
                try:
                    yield self
                finally:
                    self._handler = None
                    if main_thread:
                        signal.signal(signal.SIGTERM, previous)
            return
        if not _on_main_thread():
            logging.warning("Training runs outside the main thread, where Python cannot "
                            "handle signals: SIGTERM will not save a checkpoint.")
            yield self
            return
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: self._requested.set())
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _cluster_handler(self, scratch):
        # The handler wants a checkpoint of its own to restore and write; it
        # gets an empty one in a scratch folder (saving goes through save_fn),
        # so it never restores or writes anything of the run's.
        config = tf.distribute.experimental.TerminationConfig(
            exit_fn=self._stop, save_fn=self._save_for_cluster, grace_period=0)
        return tf.distribute.experimental.PreemptionCheckpointHandler(
            self.cluster_resolver, tf.train.Checkpoint(),
            checkpoint_dir=os.path.join(scratch, "handler"), termination_config=config)

    def _save_for_cluster(self, *args, **kwargs):
        # At an epoch's last step the epoch checkpoint, written by every
        # worker at its end, is this step's checkpoint.
        if not self.checkpoint.at_epoch_end():
            self._path = self.checkpoint.save_step()

    def _stop(self):
        if self.checkpoint.at_epoch_end():
            self._stop_at_epoch_end = True
            return
        raise self._preempted(self._path)

    def _preempted(self, path):
        epoch = int(self.checkpoint.epoch.numpy())
        if self.checkpoint.epoch_step.numpy() == 0:
            epoch -= 1  # stopped right after an epoch's end: that epoch
        return Preempted(self.checkpoint.global_step, epoch + 1, path)

    def on_train_batch_end(self, batch, logs=None):
        if self._handler is not None:
            self._handler.save_checkpoint_if_preempted()
        elif self.requested:
            if self.checkpoint.at_epoch_end():
                self._stop_at_epoch_end = True
            else:
                raise self._preempted(self.checkpoint.save_step())

    def on_epoch_end(self, epoch, logs=None):
        if self._stop_at_epoch_end:
            raise self._preempted(self.checkpoint.epoch_path(epoch + 1))


class SendSigtermAtStep(keras.callbacks.Callback):
    """Test aid: sends this process SIGTERM just before 1-based global step `step`.

    The signal then arrives while that step is in flight, as a scheduler's
    would; the step finishes and is saved.

    Args:
        step: the 1-based optimizer step during which the signal arrives.
    """

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) + 1 == self.step:
            os.kill(os.getpid(), signal.SIGTERM)

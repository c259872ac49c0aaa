"""Per-epoch checkpoints of a method and its optimizer, and resuming from them.

Why a run killed at any moment (SIGKILL included) restarts cleanly:

- TensorFlow writes a checkpoint's shards to a temporary prefix and merges
  them into `ckpt-N.index` / `ckpt-N.data-*` last; the `checkpoint` state
  file that names the newest checkpoint is replaced atomically (write then
  rename) only after that. A kill during a save therefore leaves the state
  file naming the previous, complete checkpoint.
- What no ordering can prevent (a truncated or corrupted file after a disk or
  network-filesystem failure, a state file naming a deleted checkpoint) is
  caught on restore: `restore_latest` tries the checkpoints newest first and
  falls back to the previous one, with a warning naming the file that failed.
"""

import glob
import os
import re

import keras
import tensorflow as tf
from absl import logging

_CHECKPOINT_NUMBER = re.compile(r"ckpt-(\d+)\.index$")


class EpochCheckpoint(keras.callbacks.Callback):
    """Writes the method, its optimizer and the epoch count after every epoch.

    Everything a method owns is a variable of the model (EMA targets, queues,
    memory banks, BatchNorm statistics) or of the optimizer (step counter,
    momentum slots), so one `tf.train.Checkpoint` captures the whole training
    state; schedules (learning rate, EMA momentum) are functions of the
    restored `optimizer.iterations`, and the data position is the epoch,
    because the input stream is a pure function of (seed, epoch).

    Args:
        model: the method being trained (its optimizer must be built).
        directory: where `ckpt-N` files are read from.
        max_to_keep: checkpoints kept (at least 2, so a damaged newest one
            leaves a previous one to fall back on).
        write_directory: where checkpoints are written, if not `directory`.
            Under MultiWorkerMirroredStrategy every worker must take part in
            the save, but only the chief's copy is kept: the others write to
            a scratch directory of their own (see
            `keras_ssl.distribute.strategy.worker_directory`), which is
            deleted after each save.

    Example:
    >>> checkpoint = EpochCheckpoint(method, "runs/simclr/checkpoints")
    >>> initial_epoch = checkpoint.restore_latest()
    >>> method.fit(dataset, epochs=10, initial_epoch=initial_epoch, callbacks=[checkpoint])
    """

    def __init__(self, model, directory, max_to_keep=2, write_directory=None):
        super().__init__()
        if max_to_keep is not None and max_to_keep < 2:
            raise ValueError(f"max_to_keep must be >= 2 to allow a fallback, got {max_to_keep}.")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, epoch=self.epoch)
        self._read_directory = os.fspath(directory)
        self._write_directory = os.fspath(write_directory or directory)
        self._max_to_keep = max_to_keep
        self.restored_path = None

    def _manager(self, directory):
        return tf.train.CheckpointManager(self.checkpoint, directory,
                                          max_to_keep=self._max_to_keep)

    def candidates(self):
        """Checkpoint prefixes to try, newest first.

        The state file's list, or, when that file is unreadable, every
        `ckpt-N.index` in the directory.
        """
        try:
            listed = list(self._manager(self._read_directory).checkpoints)
        except (tf.errors.OpError, ValueError) as error:  # unparsable state file
            logging.warning("Checkpoint state file in %s is unreadable (%s); "
                            "scanning for ckpt-N files.", self._read_directory, error)
            listed = []
        on_disk = {}
        for index_file in glob.glob(os.path.join(self._read_directory, "ckpt-*.index")):
            match = _CHECKPOINT_NUMBER.search(index_file)
            if match:
                on_disk[int(match.group(1))] = index_file[:-len(".index")]
        if not listed:
            listed = [on_disk[number] for number in sorted(on_disk)]
        return list(reversed(listed))

    def restore_latest(self):
        """Restores the newest checkpoint that reads back whole; returns its epoch count.

        A checkpoint whose files fail to read (missing, truncated or
        corrupted: TensorFlow checks every tensor's CRC) is skipped with a
        warning naming it, and the previous one is tried. Variables a failed
        attempt may have half-written are overwritten by the next attempt,
        which restores every one of them. Returns 0 when the directory holds
        no checkpoint.

        Raises:
            ValueError: when checkpoints exist but none can be read, or when
                one reads but does not match the model (different flags):
                starting afresh would silently overwrite that run.
        """
        candidates = self.candidates()
        for path in candidates:
            try:
                # Reading raises many types (OpError, IndexError "Read less
                # bytes than requested", ValueError...); all mean "unreadable".
                status = self.checkpoint.restore(path)
            except Exception as error:  # noqa: BLE001
                first_line = (str(error).strip().splitlines() or [""])[0][:300]
                logging.warning(
                    "Checkpoint %s is unreadable (%s: %s); falling back to the previous one.",
                    path, type(error).__name__, first_line)
                continue
            try:
                status.assert_existing_objects_matched()
            except AssertionError as error:
                raise ValueError(
                    f"checkpoint {path} does not match this model (were the flags "
                    f"changed?); use another --model_dir. {str(error)[:300]}") from None
            self.restored_path = path
            return int(self.epoch.numpy())
        if candidates:
            raise ValueError(
                f"no checkpoint in {self._read_directory} can be read or matches this model "
                f"(tried {', '.join(candidates)}); were the flags changed? Use another --model_dir, or move this one away to start afresh.")
        return 0

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.assign(epoch + 1)
        self._manager(self._write_directory).save(checkpoint_number=epoch + 1)
        if self._write_directory != self._read_directory:
            tf.io.gfile.rmtree(self._write_directory)

    @property
    def directory(self):
        return self._read_directory

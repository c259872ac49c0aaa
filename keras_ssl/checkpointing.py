"""Epoch and step checkpoints of a method and its optimizer, and resuming from them.

A run keeps its last epoch checkpoints in `checkpoints/ckpt-E` (E epochs
done) and, when asked, the newest few step checkpoints in
`checkpoints/steps/ckpt-S` (S global steps done, taken inside an epoch).
Both hold the same objects, so a resume takes whichever is furthest along,
and the preemption path (`keras_ssl.preemption`) writes step checkpoints too.
Every path goes through `tf.io.gfile`, so a directory may be a `gs://` or
`ram://` URL.

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

import os
import re

import keras
import tensorflow as tf
from absl import logging

_CHECKPOINT_NUMBER = re.compile(r"ckpt-(\d+)\.index$")

# Sub-folder of the checkpoint directory that holds the step checkpoints.
STEP_CHECKPOINTS = "steps"


class EpochCheckpoint(keras.callbacks.Callback):
    """Writes the method, its optimizer and the data position after every
    epoch, and every `every_steps` steps if asked.

    Everything a method owns is a variable of the model (EMA targets, queues,
    memory banks, BatchNorm statistics) or of the optimizer (step counter,
    momentum slots), so one `tf.train.Checkpoint` captures the whole training
    state; schedules (learning rate, EMA momentum) are functions of the
    restored `optimizer.iterations`. The data position is two counters,
    `epoch` (epochs done) and `epoch_step` (steps of the next epoch done),
    because the input stream is a pure function of (seed, epoch) that can
    start at any step of an epoch (`train_dataset(start_step=...)`).

    A step checkpoint is never taken at the last step of an epoch: the epoch
    checkpoint follows at once, after the epoch-end hooks.

    Args:
        model: the method being trained (its optimizer must be built).
        directory: where `ckpt-N` files are read from.
        max_to_keep: epoch checkpoints kept (at least 2, so a damaged newest
            one leaves a previous one to fall back on).
        write_directory: where checkpoints are written, if not `directory`.
            Under MultiWorkerMirroredStrategy every worker must take part in
            the save, but only the chief's copy is kept: the others write to
            a scratch directory of their own (see
            `keras_ssl.distribute.strategy.worker_directory`), which is
            deleted after each save.
        every_steps: also write a step checkpoint every this many global
            steps (0: epoch checkpoints only).
        steps_per_epoch: steps of an epoch; needed with `every_steps` and to
            resume from step checkpoints (default: the method's
            `run.steps_per_epoch`).
        steps_to_keep: step checkpoints kept.

    Example:
    >>> checkpoint = EpochCheckpoint(method, "runs/simclr/checkpoints")
    >>> initial_epoch = checkpoint.restore_latest()
    >>> method.fit(dataset, epochs=10, initial_epoch=initial_epoch, callbacks=[checkpoint])
    """

    def __init__(self, model, directory, max_to_keep=2, write_directory=None, *,
                 every_steps=0, steps_per_epoch=None, steps_to_keep=3):
        super().__init__()
        if max_to_keep is not None and max_to_keep < 2:
            raise ValueError(f"max_to_keep must be >= 2 to allow a fallback, got {max_to_keep}.")
        if steps_per_epoch is None and getattr(model, "run", None) is not None:
            steps_per_epoch = model.run.steps_per_epoch
        if every_steps and not steps_per_epoch:
            raise ValueError("every_steps needs steps_per_epoch (or a method with a run context).")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.epoch_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_step")
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, epoch=self.epoch, epoch_step=self.epoch_step)
        # Checkpoints written before step checkpoints existed have no epoch_step.
        self._epoch_only_checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, epoch=self.epoch)
        self._read_directory = os.fspath(directory)
        self._write_directory = os.fspath(write_directory or directory)
        self._max_to_keep = max_to_keep
        self.every_steps = every_steps
        self.steps_per_epoch = steps_per_epoch
        self._steps_to_keep = steps_to_keep
        self.restored_path = None
        self._last_step_saved = None

    def _manager(self, directory, max_to_keep=None):
        return tf.train.CheckpointManager(self.checkpoint, directory,
                                          max_to_keep=max_to_keep or self._max_to_keep)

    @property
    def step_directory(self):
        """Where step checkpoints are read from."""
        return os.path.join(self._read_directory, STEP_CHECKPOINTS)

    @property
    def global_step(self):
        """Steps trained so far, counted from the data position."""
        return int(self.epoch.numpy()) * (self.steps_per_epoch or 0) + int(
            self.epoch_step.numpy())

    def _listed(self, directory):
        """Prefixes of the checkpoints in `directory`, oldest first, each with its number.

        The state file's list, or, when that file is unreadable, every
        `ckpt-N.index` in the directory.
        """
        try:
            listed = list(self._manager(directory).checkpoints)
        except (tf.errors.OpError, ValueError) as error:  # unparsable state file
            logging.warning("Checkpoint state file in %s is unreadable (%s); "
                            "scanning for ckpt-N files.", directory, error)
            listed = []
        on_disk = {}
        for index_file in tf.io.gfile.glob(os.path.join(directory, "ckpt-*.index")):
            match = _CHECKPOINT_NUMBER.search(index_file)
            if match:
                on_disk[int(match.group(1))] = index_file[:-len(".index")]
        if not listed:
            listed = [on_disk[number] for number in sorted(on_disk)]
        return [(path, int(path.rsplit("-", 1)[1])) for path in listed]

    def candidates(self):
        """Checkpoint prefixes to try, furthest along first.

        Epoch checkpoint `ckpt-E` stands at global step E * steps_per_epoch,
        step checkpoint `steps/ckpt-S` at S; on a tie the epoch one comes
        first (its epoch-end hooks have run). Step checkpoints are only
        considered when `steps_per_epoch` is known.
        """
        positions = [((number * (self.steps_per_epoch or 1), 1), path)
                     for path, number in self._listed(self._read_directory)]
        if self.steps_per_epoch:
            positions += [((number, 0), path) for path, number in self._listed(self.step_directory)]
        return [path for _, path in sorted(positions, reverse=True)]

    def restore_latest(self):
        """Restores the newest checkpoint that reads back whole; returns its epoch count.

        After a step checkpoint, `epoch_step` holds the steps of the
        returned epoch that are already done (0 after an epoch checkpoint).

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
                status = self._checkpoint_of(path).restore(path)
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

    def _checkpoint_of(self, path):
        """The object to restore `path` into: with `epoch_step` if the file has one."""
        # The reader of the prefix itself: tf.train.list_variables would take a
        # prefix on a file system that calls every prefix a folder (ram://) for one.
        reader = tf.compat.v1.train.NewCheckpointReader(path)
        names = {name.split("/")[0] for name in reader.get_variable_to_shape_map()}
        if "epoch_step" in names:
            return self.checkpoint
        self.epoch_step.assign(0)
        return self._epoch_only_checkpoint

    def save_step(self):
        """Writes a step checkpoint at the current position; returns its prefix.

        The prefix is the one in the read directory (the chief's), also on
        the workers whose own copy goes to a scratch directory.
        """
        number = self.global_step
        path = os.path.join(self.step_directory, f"ckpt-{number}")
        if number == self._last_step_saved:  # a preemption at a periodic step
            return path
        self._manager(os.path.join(self._write_directory, STEP_CHECKPOINTS),
                      self._steps_to_keep).save(checkpoint_number=number)
        self._drop_scratch_copy()
        self._last_step_saved = number
        return path

    def epoch_path(self, epochs_done):
        """The prefix of the epoch checkpoint written after `epochs_done` epochs."""
        return os.path.join(self._read_directory, f"ckpt-{epochs_done}")

    def at_epoch_end(self):
        """Whether every step of the current epoch is done (its epoch end is next)."""
        return bool(self.steps_per_epoch) and int(self.epoch_step.numpy()) >= self.steps_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        # A fit started at another epoch than the restored one starts it afresh.
        if epoch != int(self.epoch.numpy()):
            self.epoch.assign(epoch)
            self.epoch_step.assign(0)

    def on_train_batch_end(self, batch, logs=None):
        self.epoch_step.assign_add(1)
        if self.every_steps and self.global_step % self.every_steps == 0 and (
                not self.at_epoch_end()):
            self.save_step()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.assign(epoch + 1)
        self.epoch_step.assign(0)
        self._manager(self._write_directory).save(checkpoint_number=epoch + 1)
        self._drop_scratch_copy()

    def _drop_scratch_copy(self):
        if self._write_directory != self._read_directory:
            tf.io.gfile.rmtree(self._write_directory)

    @property
    def directory(self):
        return self._read_directory

"""Per-epoch checkpoints of a method and its optimizer, and resuming from them."""

import os

import keras
import tensorflow as tf


class EpochCheckpoint(keras.callbacks.Callback):
    """Writes the method, its optimizer and the epoch count after every epoch.

    Everything a method owns is a variable of the model (EMA targets, queues,
    memory banks) or of the optimizer (step counter, momentum slots), so one
    `tf.train.Checkpoint` captures the whole training state; the data position
    is the epoch, because the input stream is a pure function of (seed, epoch).

    Args:
        model: the method being trained (its optimizer must be built).
        directory: where `ckpt-N` files go.
        max_to_keep: checkpoints kept.
    """

    def __init__(self, model, directory, max_to_keep=2):
        super().__init__()
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, epoch=self.epoch)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, directory, max_to_keep=max_to_keep)

    def restore_latest(self):
        """Restores the newest checkpoint if any; returns the epochs it completed."""
        path = self.manager.latest_checkpoint
        if path is None:
            return 0
        self.checkpoint.restore(path).assert_existing_objects_matched()
        return int(self.epoch.numpy())

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)

    @property
    def directory(self):
        return os.fspath(self.manager.directory)

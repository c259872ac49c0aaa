"""`TaskCheckpoint`: a continual run's checkpoint after each finished task, and its resume.

What `keras_ssl.training.continual_pretrain` saves between tasks: the method
and its optimizer as `ckpt-N` (N tasks done), and beside it the results of
those tasks and every task's replay buffer as JSON.
"""

import json
import os

import tensorflow as tf
from absl import logging

from keras_ssl.data.storage import read_bytes, write_bytes

# Beside the checkpoints in model_dir/checkpoints: the results of the tasks done.
RESULTS_FILE = "continual.json"


class TaskCheckpoint:
    """The checkpoint of a continual run after each finished task, and resuming from it.

    `ckpt-N` (N: tasks done) holds the method, its optimizer and the count
    `tasks_done`; `continual.json` beside it holds the results of those
    tasks and the replay buffer after each (dataset indices), which the
    checkpoint cannot hold (plain Python lists whose length grows). The JSON
    is written (atomically) before the checkpoint and keeps every task's
    buffer, so whichever checkpoint is restored, a newer JSON left by a kill
    between the two writes can be cut back to it.

    Args:
        model: the method (its optimizer built).
        directory: where checkpoints are read (model_dir/checkpoints; any
            tf.io.gfile path).
        write_directory: where this process writes them (a non-chief
            worker's scratch folder, `worker_directory`); default `directory`.
        settings: what a resumed call must share with the first (the task
            split, buffer size...); saved in the JSON and compared on restore.
        max_to_keep: checkpoints kept (>= 2, so an unreadable newest one
            falls back to the one before).

    Example:
    >>> progress = TaskCheckpoint(model, "runs/nncsl/checkpoints", settings={...})
    >>> results = progress.restore_latest()  # empty lists on a fresh run
    >>> ...  # train task len(results["task_test_top1"]), append its results
    >>> progress.save(results)
    """

    # The per-task lists of the results, in the JSON and in `restore_latest`'s dict.
    LISTS = ("task_test_top1", "task_loss", "buffer_sizes", "labeled_batch_sizes", "buffers")

    def __init__(self, model, directory, *, write_directory=None, settings=None, max_to_keep=2):
        self.tasks_done = tf.Variable(0, dtype=tf.int64, trainable=False, name="tasks_done")
        # model= is the object path restore_encoder reads the encoder from
        # (tf.train.Checkpoint(model=...(encoder=...))), as in EpochCheckpoint.
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                              tasks_done=self.tasks_done)
        self.directory = os.fspath(directory)
        self.write_directory = os.fspath(write_directory or directory)
        self.settings = dict(settings or {})
        self.max_to_keep = max(int(max_to_keep), 2)
        self.restored_path = None

    @property
    def results_path(self):
        """The results JSON (in the read directory: only the chief writes it)."""
        return os.path.join(self.directory, RESULTS_FILE)

    def _manager(self, directory):
        return tf.train.CheckpointManager(self.checkpoint, directory,
                                          max_to_keep=self.max_to_keep)

    def restore_latest(self):
        """Restores the newest readable checkpoint; returns the results of its tasks.

        Returns a dict of the `LISTS`, each as long as the tasks done (empty
        lists when `directory` holds no checkpoint: a fresh run).

        Raises:
            ValueError: the saved settings differ from this call's, the
                checkpoint does not match the model, none can be read, or
                the results file is missing or behind the checkpoint.
        """
        saved = self._read_results()
        if saved is not None and saved.get("settings") != self.settings:
            raise ValueError(
                f"{self.directory} holds a continual run of other arguments "
                f"({_differences(saved.get('settings') or {}, self.settings)}); rerun with "
                "the first call's arguments, or use another --model_dir.")
        candidates = list(reversed(self._manager(self.directory).checkpoints))
        for path in candidates:
            try:
                status = self.checkpoint.restore(path)
            except Exception as error:  # noqa: BLE001  (any read error: try the previous one)
                logging.warning("Checkpoint %s is unreadable (%s: %s); trying the previous one.",
                                path, type(error).__name__, str(error).splitlines()[0][:300])
                continue
            try:
                status.assert_existing_objects_matched()
            except AssertionError as error:
                raise ValueError(
                    f"checkpoint {path} does not match this model (were the flags changed?); "
                    f"use another --model_dir. {str(error)[:300]}") from None
            done = int(self.tasks_done.numpy())
            if saved is None or len(saved["task_test_top1"]) < done:
                raise ValueError(f"{path} holds {done} finished tasks but {self.results_path} "
                                 "does not have their results; use another --model_dir.")
            self.restored_path = path
            return {name: list(saved[name][:done]) for name in self.LISTS}
        if candidates:
            raise ValueError(f"no checkpoint in {self.directory} can be read (tried "
                             f"{', '.join(candidates)}); use another --model_dir.")
        return {name: [] for name in self.LISTS}

    def save(self, results, *, chief=True):
        """Saves the model after `len(results["task_test_top1"])` finished tasks.

        Every worker takes part in the checkpoint (multi-worker saves may
        run collectives); only the chief writes the results file, and the
        other workers delete their scratch copy after each save.
        """
        done = len(results["task_test_top1"])
        if chief:
            # First the results, then the checkpoint that points at them: a kill
            # in between leaves results one task ahead, which restore cuts back.
            text = json.dumps({"tasks_done": done, "settings": self.settings,
                               **{name: results[name] for name in self.LISTS}})
            write_bytes(self.results_path, text.encode("utf-8"), atomic=True)
        self.tasks_done.assign(done)
        path = self._manager(self.write_directory).save(checkpoint_number=done)
        if self.write_directory != self.directory:
            # A non-chief worker's copy only took part in the collective save.
            tf.io.gfile.rmtree(self.write_directory)
        return path

    def _read_results(self):
        if not tf.io.gfile.exists(self.results_path):
            return None
        return json.loads(read_bytes(self.results_path).decode("utf-8"))


def _differences(saved, current):
    names = sorted(name for name in {*saved, *current} if saved.get(name) != current.get(name))
    return ", ".join(f"{name}: saved {saved.get(name)!r}, now {current.get(name)!r}"
                     for name in names)

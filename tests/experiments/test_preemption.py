"""Preemption and step checkpoints in one process: `pretrain` on TensorFlow's in-memory
`ram://` file system (which only this process sees), the data stream started mid-epoch,
and how `EpochCheckpoint` orders and reads its epoch and step checkpoints.

The CLI's SIGTERM and step-checkpoint runs, in subprocesses, are in test_fault_tolerance.
"""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.checkpointing import EpochCheckpoint
from keras_ssl.data.pipeline import train_dataset
from keras_ssl.data.split import Split
from keras_ssl.preemption import Preempted
from keras_ssl.training import pretrain, restore_encoder
from tests.experiments.test_fault_tolerance import SAVE_COUNTER, _build, write_npz

STEPS_PER_EPOCH = 4  # 64 images at batch 16
EPOCHS = 2


def ram_tensors(model_dir):
    """Every saved tensor of the newest epoch checkpoint in model_dir, by key."""
    reader = tf.train.load_checkpoint(model_dir + "/checkpoints")
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
            if not key.startswith("_CHECKPOINTABLE_OBJECT_GRAPH") and key != SAVE_COUNTER}


@pytest.fixture(scope="module")
def run_config(tmp_path_factory):
    data = write_npz(tmp_path_factory.mktemp("data") / "train.npz", 64)
    return dict(method="moco_v2", data=f"npz:{data}", backbone="tiny", epochs=EPOCHS,
                global_batch_size=16, knn_k=5, verbose=0, deterministic=True, blur=False,
                method_kwargs={"queue_size": 64})


@pytest.fixture(scope="module")
def uninterrupted_on_ram(run_config):
    result = pretrain(model_dir="ram://preemption/uninterrupted", **run_config)
    return result, ram_tensors("ram://preemption/uninterrupted")


def test_preempted_run_on_ram_resumes_mid_epoch_and_ends_bitwise_equal(
        run_config, uninterrupted_on_ram):
    model_dir = "ram://preemption/preempted"
    config = dict(run_config, model_dir=model_dir, checkpoint_every_steps=3)
    # SIGTERM while step 6 (the 2nd of epoch 2) runs: that step finishes and is saved.
    with pytest.raises(Preempted) as stopped:
        pretrain(sigterm_at_step=6, **config)
    assert (stopped.value.global_step, stopped.value.epoch) == (6, 2)
    assert stopped.value.path == f"{model_dir}/checkpoints/steps/ckpt-6"
    assert "preempted at step 6 (epoch 2)" in str(stopped.value)
    assert tf.io.gfile.exists(stopped.value.path + ".index")
    assert tf.io.gfile.exists(f"{model_dir}/checkpoints/steps/ckpt-3.index")
    assert tf.io.gfile.exists(f"{model_dir}/config.json")

    resumed = pretrain(**config)
    assert resumed["initial_epoch"] == 1 and resumed["initial_step"] == 6
    assert resumed["steps_run"] == EPOCHS * STEPS_PER_EPOCH - 6
    assert resumed["epochs_run"] == 1  # the rest of epoch 2
    uninterrupted, tensors = uninterrupted_on_ram
    assert uninterrupted["steps_run"] == EPOCHS * STEPS_PER_EPOCH
    assert resumed["knn_top1"] == uninterrupted["knn_top1"]
    saved = ram_tensors(model_dir)
    assert saved.keys() == tensors.keys()
    different = [key for key in saved if not np.array_equal(saved[key], tensors[key])]
    assert not different, different[:3]

    # Evaluation and export find the run's encoder on the URL too (restore_encoder
    # raises unless every encoder weight is read from the checkpoint).
    _, restored_config, restored_dir, prefix = restore_encoder(model_dir)
    assert (restored_dir, prefix) == (model_dir, f"{model_dir}/checkpoints/ckpt-{EPOCHS}")
    assert restored_config["checkpoint_every_steps"] == 3
    assert restore_encoder(stopped.value.path)[2] == model_dir  # a step checkpoint's prefix


def test_sigterm_at_the_last_step_of_an_epoch_stops_after_its_epoch_checkpoint(run_config):
    model_dir = "ram://preemption/at_epoch_end"
    with pytest.raises(Preempted) as stopped:
        pretrain(model_dir=model_dir, sigterm_at_step=STEPS_PER_EPOCH, **run_config)
    # The epoch checkpoint is that step's checkpoint; no step checkpoint is written.
    assert (stopped.value.global_step, stopped.value.epoch) == (STEPS_PER_EPOCH, 1)
    assert stopped.value.path == f"{model_dir}/checkpoints/ckpt-1"
    assert not tf.io.gfile.glob(f"{model_dir}/checkpoints/steps/ckpt-*")
    reader = tf.compat.v1.train.NewCheckpointReader(stopped.value.path)  # ram: a prefix
    assert reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE") == 1
    assert reader.get_tensor("epoch_step/.ATTRIBUTES/VARIABLE_VALUE") == 0


def test_train_dataset_started_mid_epoch_is_the_rest_of_the_full_stream():
    rng = np.random.default_rng(0)
    split = Split(images=rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8), paths=None,
                  labels=np.arange(40) % 4)

    def batches(**kwargs):
        dataset = train_dataset(split, batch_size=8, seed=3, epochs=3, **kwargs)
        return dataset, [(batch["index"].numpy(), batch["views"][0].numpy())
                         for batch in dataset]

    _, full = batches()
    started, rest = batches(start_epoch=1, start_step=2)
    assert int(started.cardinality()) == len(rest) == 2 * 5 - 2
    # Same examples and same augmented views: the seeds keep their batch numbers.
    for (index, view), (full_index, full_view) in zip(rest, full[5 + 2:], strict=True):
        np.testing.assert_array_equal(index, full_index)
        np.testing.assert_array_equal(view, full_view)
    with pytest.raises(ValueError, match="start_step=5"):
        train_dataset(split, batch_size=8, seed=3, start_step=5)


def test_restore_takes_the_checkpoint_furthest_along_and_reads_old_epoch_only_ones(tmp_path):
    model = _build("byol", seed=1)
    checkpoint = EpochCheckpoint(model, tmp_path, steps_per_epoch=5, every_steps=2)
    for _ in range(3):  # steps 1-3 of epoch 1: a step checkpoint at step 2
        checkpoint.on_train_batch_end(0)
    assert checkpoint.global_step == 3
    for _ in range(2):
        checkpoint.on_train_batch_end(0)  # step 4 saved; step 5 ends the epoch: not saved
    checkpoint.on_epoch_end(0)
    for _ in range(2):
        checkpoint.on_train_batch_end(0)  # step 7 of 10 is not a multiple of 2; 6 is
    assert [path.rsplit("/", 2)[-2:] for path in checkpoint.candidates()] == [
        ["steps", "ckpt-6"], [tmp_path.name, "ckpt-1"], ["steps", "ckpt-4"],
        ["steps", "ckpt-2"]]

    restorer = EpochCheckpoint(_build("byol", seed=2), tmp_path, steps_per_epoch=5)
    assert restorer.restore_latest() == 1
    assert int(restorer.epoch_step.numpy()) == 1 and restorer.global_step == 6

    # A checkpoint of the epoch-only format (before step checkpoints) still restores.
    old_dir = tmp_path / "old"
    epoch_only = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                     epoch=tf.Variable(2, dtype=tf.int64))
    tf.train.CheckpointManager(epoch_only, old_dir, max_to_keep=2).save(checkpoint_number=2)
    old = EpochCheckpoint(_build("byol", seed=3), old_dir, steps_per_epoch=5)
    assert old.restore_latest() == 2 and int(old.epoch_step.numpy()) == 0

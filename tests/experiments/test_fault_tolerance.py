"""Runs that survive faults: SIGKILL and resume, SIGTERM (preemption), step checkpoints,
damaged checkpoints, NaN losses.

The process tests run experiments/train.py in subprocesses on a tiny MoCo v2
(EMA key encoder, queue, momentum-shuffled BatchNorm) over a small npz made
here; the last tests check in-process that a checkpoint holds every
variable of the stateful methods and of their optimizer.
"""

import functools
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import backbones, methods
from keras_ssl.checkpointing import EpochCheckpoint
from keras_ssl.methods import RunContext
from keras_ssl.training import make_optimizer
from tests.experiments.background_runs import started_runs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(ROOT, "experiments", "train.py")
EPOCHS = 3


def write_npz(path, num_train, num_test=20, seed=0):
    """Random 32-px images with labels, in keras.datasets' npz layout."""
    rng = np.random.default_rng(seed)
    np.savez(path, x_train=rng.integers(0, 256, (num_train, 32, 32, 3), dtype=np.uint8),
             y_train=np.arange(num_train) % 10,
             x_test=rng.integers(0, 256, (num_test, 32, 32, 3), dtype=np.uint8),
             y_test=np.arange(num_test) % 10)
    return path


def checkpoint_tensors(model_dir):
    """Every saved tensor of the newest checkpoint in model_dir, by key."""
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
            if not key.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}


def assert_same_tensors(first, second, ignore=()):
    first = {key: value for key, value in first.items() if key not in ignore}
    second = {key: value for key, value in second.items() if key not in ignore}
    assert first.keys() == second.keys()
    different = [key for key in first if not np.array_equal(first[key], second[key])]
    assert not different, f"{len(different)} of {len(first)} tensors differ, e.g. {different[:3]}"


# Counts the saves, so it differs between runs that wrote different step
# checkpoints; it plays no part in training.
SAVE_COUNTER = "save_counter/.ATTRIBUTES/VARIABLE_VALUE"


def newest_checkpoint_number(model_dir):
    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    return None if path is None else int(path.rsplit("-", 1)[1])


@pytest.fixture(scope="module")
def data_spec(tmp_path_factory):
    # 320 images at batch 16: 20 steps an epoch, long enough to be killed inside one.
    return "npz:" + write_npz(tmp_path_factory.mktemp("data") / "train.npz", 320).as_posix()


def train_command(data_spec, model_dir, *extra):
    # The CPU preset's MoCo v2 (4,096-key queue) rather than the default
    # 65,536 keys: checkpoints of 2 MB instead of 33 MB and ~15% less CPU a
    # run, for the same checks (the queue still outlasts the 960 keys of a
    # run). The flags after --preset override its ResNet-18 and batch of 256.
    return [sys.executable, TRAIN, "--method=moco_v2", "--preset=cpu_small",
            f"--data={data_spec}", "--backbone=tiny", "--width_multiplier=1.0",
            "--train_per_class=0", "--global_batch_size=16", f"--epochs={EPOCHS}", "--knn_k=5",
            "--verbose=0", "--deterministic", f"--model_dir={model_dir}", *extra]


def run(command, check=True):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if check:
        assert process.returncode == 0, process.stderr[-3000:]
    return process


def last_json(process):
    import json
    return json.loads(process.stdout.strip().splitlines()[-1])


def _uninterrupted_run(data_spec, model_dir):
    result = last_json(run(train_command(data_spec, model_dir)))
    assert result["epochs_run"] == EPOCHS
    return model_dir, checkpoint_tensors(model_dir)


def _damaged_run(data_spec, uninterrupted, model_dir):
    shutil.copytree(uninterrupted.result()[0], model_dir)
    damaged = model_dir / "checkpoints" / f"ckpt-{EPOCHS}.data-00000-of-00001"
    with open(damaged, "r+b") as file:
        file.truncate(os.path.getsize(damaged) // 2)
    return model_dir, run(train_command(data_spec, model_dir))


def _unreadable_run(data_spec, uninterrupted, model_dir):
    shutil.copytree(uninterrupted.result()[0], model_dir)
    return model_dir, run(train_command(data_spec, model_dir, "--backbone=resnet18",
                                        "--width_multiplier=0.125"), check=False)


def _step_resumed_run(data_spec, model_dir):
    # Step checkpoints every 5 steps; the NaN at step 28 (8th step of epoch 2)
    # stops the run after step 27, so the newest good one is step 25, mid-epoch.
    command = train_command(data_spec, model_dir, "--checkpoint_every_steps=5")
    stopped = run(command + ["--debug_inject_nan_at_step=28"], check=False)
    return model_dir, stopped, run(command)


def _nan_run(data_spec, model_dir):
    # Step 25 is the 5th step of epoch 2 (20 steps an epoch).
    return model_dir, run(train_command(data_spec, model_dir, "--debug_inject_nan_at_step=25"),
                          check=False)


@pytest.fixture(scope="module")
def background(request, data_spec, tmp_path_factory):
    """This module's train.py runs that no test has to watch, all started when
    first requested (`background_runs`), so that they overlap one another and
    the SIGKILL test's own two runs instead of each test waiting for its own.
    The damaged and unreadable runs start from a copy of the uninterrupted
    one, so they start its run too and wait for it. Only the runs some
    collected test of this module asks for start at once (a test run alone
    with -k starts its own, and the uninterrupted run it compares with).
    Assertions about a run stay in its test, which takes `.result()` of its
    future.
    """
    jobs = {"uninterrupted": (functools.partial(_uninterrupted_run, data_spec), ()),
            "damaged_run": (functools.partial(_damaged_run, data_spec), ("uninterrupted",)),
            "unreadable_run": (functools.partial(_unreadable_run, data_spec),
                               ("uninterrupted",)),
            "nan_run": (functools.partial(_nan_run, data_spec), ()),
            "step_resumed_run": (functools.partial(_step_resumed_run, data_spec), ())}
    folder = tmp_path_factory.mktemp("background")
    with started_runs(request, jobs, lambda name: folder / name, max_workers=len(jobs),
                      module_only=True) as runs:
        yield runs


@pytest.fixture(scope="module")
def uninterrupted(background):
    """The run never stopped: a future of (its model_dir, its newest checkpoint's tensors)."""
    return background.start("uninterrupted")


@pytest.fixture(scope="module")
def damaged_run(background):
    """A copy of the uninterrupted run, its newest checkpoint truncated to half, run
    again: a future of (model_dir, process)."""
    return background.start("damaged_run")


@pytest.fixture(scope="module")
def unreadable_run(background):
    """A copy of the uninterrupted run, run again with another backbone: a future of
    (model_dir, process)."""
    return background.start("unreadable_run")


@pytest.fixture(scope="module")
def step_resumed_run(background):
    """A run with step checkpoints stopped by a NaN at step 28, then rerun: a future
    of (model_dir, stopped process, rerun process)."""
    return background.start("step_resumed_run")


@pytest.fixture(scope="module")
def nan_run(background):
    """A fresh run whose loss turns NaN at global step 25: a future of (model_dir, process)."""
    return background.start("nan_run")


# ---- SIGKILL and resume ------------------------------------------------------------------

def test_sigkill_during_an_epoch_then_rerun_ends_with_the_uninterrupted_weights(
        data_spec, uninterrupted, tmp_path):
    model_dir = tmp_path / "run"
    command = train_command(data_spec, model_dir)
    state_file = model_dir / "checkpoints" / "checkpoint"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    try:
        # Kill as soon as epoch 1's checkpoint is recorded: epoch 2 is under way.
        while process.poll() is None:
            if state_file.exists() and "ckpt-1" in state_file.read_text():
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        returncode = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert newest_checkpoint_number(model_dir) == 1

    resumed = last_json(run(command))
    assert resumed["initial_epoch"] == 1 and resumed["epochs_run"] == EPOCHS - 1
    # Weights, EMA targets, queue, BatchNorm statistics, optimizer slots and
    # step counter, epoch: bit for bit those of the run that was never stopped.
    assert_same_tensors(checkpoint_tensors(model_dir), uninterrupted.result()[1])


# ---- SIGTERM (preemption) and step checkpoints -------------------------------------------

def test_sigterm_during_an_epoch_saves_the_step_and_the_rerun_loses_none(
        data_spec, uninterrupted, tmp_path):
    model_dir = tmp_path / "run"
    command = train_command(data_spec, model_dir, "--checkpoint_every_steps=5")
    step_state_file = model_dir / "checkpoints" / "steps" / "checkpoint"
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    try:
        # Signal once the first step checkpoint is recorded: training is under way.
        while process.poll() is None:
            if step_state_file.exists():
                process.send_signal(signal.SIGTERM)
                break
            time.sleep(0.01)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 75, f"exit status {process.returncode}: {stderr[-2000:]}"
    lines = [line for line in stderr.splitlines() if "preempted at step" in line]
    assert len(lines) == 1 and "rerun the same command to resume" in lines[0], stderr[-2000:]
    assert "Traceback" not in stderr and "{" not in stdout  # no result JSON
    step = int(lines[0].split("preempted at step ")[1].split()[0])
    saved = lines[0].split("checkpoint written to ")[1].split(";")[0]
    assert os.path.exists(saved + ".index")
    assert step >= 5  # at least the checkpointed step 5 was done when the signal came

    resumed = last_json(run(command))
    # The rerun starts exactly where the signal stopped the run: no finished step lost.
    assert resumed["initial_step"] == step
    assert resumed["steps_run"] == EPOCHS * 20 - step
    assert_same_tensors(checkpoint_tensors(model_dir), uninterrupted.result()[1],
                        ignore=[SAVE_COUNTER])


def test_step_checkpoint_resume_mid_epoch_is_bitwise_the_uninterrupted_run(
        uninterrupted, step_resumed_run):
    model_dir, stopped, resumed = step_resumed_run.result()
    assert stopped.returncode == 1 and "global step 28" in stopped.stderr
    steps_dir = model_dir / "checkpoints" / "steps"
    # The newest few step checkpoints are kept beside the epoch ones.
    kept = sorted(int(name[len("ckpt-"):-len(".index")]) for name in os.listdir(steps_dir)
                  if name.endswith(".index"))
    # Saved at 30, 35, 45, 50, 55 after the resume (none at an epoch's end: 40, 60); 3 kept.
    assert kept == [45, 50, 55], kept
    result = last_json(resumed)
    assert result["initial_epoch"] == 1 and result["initial_step"] == 25
    assert result["steps_run"] == EPOCHS * 20 - 25
    assert_same_tensors(checkpoint_tensors(model_dir), uninterrupted.result()[1],
                        ignore=[SAVE_COUNTER])


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(uninterrupted, damaged_run):
    model_dir, process = damaged_run.result()
    assert f"ckpt-{EPOCHS}" in process.stderr and "falling back" in process.stderr
    resumed = last_json(process)
    assert resumed["initial_epoch"] == EPOCHS - 1 and resumed["epochs_run"] == 1
    assert_same_tensors(checkpoint_tensors(model_dir), uninterrupted.result()[1])


def test_unreadable_checkpoints_of_another_model_stop_with_one_clear_error(unreadable_run):
    _, process = unreadable_run.result()
    assert process.returncode == 2
    assert "train.py: error:" in process.stderr and "--model_dir" in process.stderr
    assert "Traceback" not in process.stderr


# ---- NaN loss ----------------------------------------------------------------------------

def test_nan_loss_stops_without_checkpointing_the_bad_step(nan_run):
    model_dir, process = nan_run.result()
    assert process.returncode == 1
    errors = [line for line in process.stderr.splitlines() if line.startswith("train.py: error:")]
    assert len(errors) == 1 and "global step 25" in errors[0] and "epoch 2" in errors[0]
    assert "Traceback" not in process.stderr
    assert "{" not in process.stdout  # no result JSON

    assert newest_checkpoint_number(model_dir) == 1
    saved = checkpoint_tensors(model_dir)
    assert saved["epoch/.ATTRIBUTES/VARIABLE_VALUE"] == 1
    assert all(np.isfinite(value).all() for value in saved.values()
               if np.issubdtype(np.asarray(value).dtype, np.floating))


# ---- what a checkpoint holds -------------------------------------------------------------

def _build(method, seed):
    import keras
    keras.utils.set_random_seed(seed)
    encoder = backbones.get("tiny", image_size=16, width_multiplier=1.0)
    kwargs = {"moco_v2": {"queue_size": 16}, "npid": {}, "byol": {},
              # An objective (CLD's group head) and the online probe: layers
              # held in the method's objectives list, not as attributes.
              "moco_v2_cld": {"queue_size": 16, "probe_classes": 3}}[method]
    model = methods.get(method, encoder=encoder,
                        run=RunContext(num_examples=32, steps_per_epoch=5, epochs=2), **kwargs)
    optimizer = make_optimizer("sgd", learning_rate=0.1, weight_decay=1e-4,
                               total_steps=10, warmup_steps=2)
    model.compile(optimizer=optimizer)
    optimizer.build(model.update_variables())
    return model


def _batches(seed):
    rng = np.random.default_rng(seed)
    views = tuple(rng.random((8, 16, 16, 3), dtype=np.float32) for _ in range(2))
    batch = {"views": views, "index": np.arange(8, dtype=np.int64),
             "label": np.zeros(8, np.int64)}
    return tf.data.Dataset.from_tensors(batch).repeat(3)


@pytest.mark.parametrize("method", ["moco_v2", "npid", "byol", "moco_v2_cld"])
def test_checkpoint_restores_every_model_and_optimizer_variable(method, tmp_path):
    trained = _build(method, seed=1)
    trained.fit(_batches(0), epochs=1, verbose=0)
    checkpoint = EpochCheckpoint(trained, tmp_path)
    checkpoint.on_epoch_end(0)

    fresh = _build(method, seed=2)
    state = [v for v in fresh.non_trainable_variables if "seed_generator" not in v.path]
    variables = {"model": (trained.variables, fresh.variables),
                 "optimizer": (trained.optimizer.variables, fresh.optimizer.variables)}
    # Sanity: the fresh copy differs in trainable weights, non-trainable state
    # (EMA targets, queue, memory bank, BatchNorm statistics) and step count,
    # so equality after the restore can only come from the checkpoint.
    assert int(fresh.optimizer.iterations.numpy()) == 0
    assert any(not np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(trained.non_trainable_variables, fresh.non_trainable_variables))
    assert state

    restorer = EpochCheckpoint(fresh, tmp_path)
    assert restorer.restore_latest() == 1
    for group, (saved, restored) in variables.items():
        assert len(saved) == len(restored)
        for a, b in zip(saved, restored):
            assert a.path == b.path
            assert np.array_equal(a.numpy(), b.numpy()), f"{group} variable {b.path} not restored"
    assert int(fresh.optimizer.iterations.numpy()) == 3

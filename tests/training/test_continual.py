"""The continual driver: T tasks in sequence with a buffer, accuracy on the seen classes after
each; a checkpoint after every task, and resuming from it."""

import math
import uuid

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.configs import nncsl as nncsl_config
from keras_ssl.methods.nncsl import NNCSL
from keras_ssl.training import restore_encoder
from keras_ssl.training.continual import TaskWarmupCosine, continual_pretrain
from keras_ssl.training.task_checkpoint import RESULTS_FILE, TaskCheckpoint

# The saves' own counter: not a training state (tests/experiments/test_fault_tolerance.py).
SAVE_COUNTER = "save_counter/.ATTRIBUTES/VARIABLE_VALUE"


def _official_lr(step, *, warmup, total, start, ref, final):
    # WarmupCosineSchedule.lr_lambda (src/utils.py:89-99) times ref_lr.
    if step < warmup:
        return start + step / max(1, warmup) * (ref - start)
    progress = (step - warmup) / max(1, total - warmup)
    return max(final, final + (ref - final) * 0.5 * (1 + math.cos(math.pi * progress)))


def test_the_schedule_restarts_at_every_task_as_the_official_one():
    schedule = TaskWarmupCosine(0.4, warmup_fraction=0.04, start_learning_rate=0.08,
                                final_learning_rate=0.032)
    for start, steps in ((0, 250), (250, 250), (500, 100)):
        schedule.begin_task(start, steps)
        warmup = round(0.04 * steps)
        for k in (0, 1, warmup - 1, warmup, steps // 2, steps - 1, steps):
            expected = _official_lr(k, warmup=warmup, total=steps, start=0.08, ref=0.4,
                                    final=0.032)
            np.testing.assert_allclose(float(schedule(start + k)), expected, rtol=1e-5,
                                       err_msg=f"task at {start}, step {k}")


def write_classes_npz(path, classes):
    """`classes` classes of random 16-px images, 16 training and 8 test images each."""
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (16 * classes, 16, 16, 3), dtype=np.uint8),
             y_train=np.arange(16 * classes) % classes,
             x_test=rng.integers(0, 256, (8 * classes, 16, 16, 3), dtype=np.uint8),
             y_test=np.arange(8 * classes) % classes)
    return f"npz:{path.as_posix()}"


@pytest.fixture(scope="module")
def data_spec(tmp_path_factory):
    return write_classes_npz(tmp_path_factory.mktemp("data") / "four.npz", 4)


def test_two_tasks_report_accuracy_on_the_seen_classes_after_each(data_spec, tmp_path,
                                                                  monkeypatch):
    # The driver applies the multi-worker patches of Keras' fit, as pretrain
    # does (a no-op here; without them every multi-worker run failed at its
    # first step). tests/distribute/test_keras_compat.py tests the patches.
    adapted = []
    adapt = distribute.adapt_fit_to_multi_worker
    monkeypatch.setattr(distribute, "adapt_fit_to_multi_worker",
                        lambda model, strategy: adapted.append(model) or adapt(model, strategy))
    result = continual_pretrain(
        method="nncsl", data=data_spec, backbone="tiny", width_multiplier=0.5, image_size=16,
        epochs=1, global_batch_size=8, optimizer="lars", learning_rate=0.1, weight_decay=1e-5,
        warmup_epochs=0, blur=False, labels_per_class=4, verbose=0, model_dir=str(tmp_path),
        method_kwargs=dict(projection_hidden_dim=8, projection_dim=8),
        view_kwargs=dict(local_size=8, num_local=1),
        **nncsl_config.continual("cpu_small", smoke=True))
    assert result["tasks"] == [[0, 1], [2, 3]]
    assert len(result["task_test_top1"]) == 2
    assert all(0.0 <= top1 <= 1.0 for top1 in result["task_test_top1"])
    assert all(np.isfinite(loss) for loss in result["task_loss"])
    # The smoke settings: 2 tasks, buffer 4: both task-0 classes' first 2
    # labels, then 1 of each of the 4 classes.
    assert result["buffer_sizes"] == [4, 4]
    assert result["labeled_images"] == 16
    assert len(adapted) == 1 and isinstance(adapted[0], NNCSL)


def test_a_non_chief_worker_saves_into_its_scratch_folder_then_deletes_it(tmp_path):
    # A multi-worker save is collective: every worker writes, and a non-chief
    # worker writes to a scratch folder of its own (worker_directory).
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    results = {name: [0.5] for name in TaskCheckpoint.LISTS}
    scratch, run_dir = tmp_path / "scratch", tmp_path / "run"
    path = TaskCheckpoint(model, run_dir, write_directory=scratch).save(results, chief=False)
    assert path.startswith(str(scratch))
    assert not scratch.exists() and not run_dir.exists()  # and no results file either
    # The chief's own save stays, results first.
    path = TaskCheckpoint(model, run_dir).save(results)
    assert tf.io.gfile.exists(path + ".index") and (run_dir / RESULTS_FILE).exists()


def test_tasks_must_divide_the_classes(data_spec, tmp_path):
    with pytest.raises(ValueError, match="--tasks=3 must divide the 4 classes"):
        continual_pretrain(method="nncsl", data=data_spec, backbone="tiny", image_size=16,
                           labels_per_class=4, model_dir=str(tmp_path), tasks=3)


def test_without_a_buffer_each_task_learns_from_its_own_labels(data_spec, tmp_path):
    # Plain fine-tuning: task 1's labelled batch holds its 2 classes only
    # (2 supports each), not 4 seen classes of which 2 have no images.
    settings = dict(nncsl_config.continual("cpu_small", smoke=True), buffer_size=0)
    result = continual_pretrain(
        method="nncsl", data=data_spec, backbone="tiny", width_multiplier=0.5, image_size=16,
        epochs=1, global_batch_size=8, optimizer="lars", learning_rate=0.1, weight_decay=1e-5,
        warmup_epochs=0, blur=False, labels_per_class=4, verbose=0, model_dir=str(tmp_path),
        method_kwargs=dict(projection_hidden_dim=8, projection_dim=8, distillation_weight=0.0),
        view_kwargs=dict(local_size=8, num_local=1), **settings)
    assert result["buffer_sizes"] == [0, 0]
    assert result["labeled_batch_sizes"] == [2, 2]
    assert all(np.isfinite(loss) for loss in result["task_loss"])


def test_a_negative_buffer_is_refused_naming_the_flag(data_spec, tmp_path):
    with pytest.raises(ValueError, match="--buffer_size=-1 must be >= 0"):
        continual_pretrain(method="nncsl", data=data_spec, backbone="tiny", image_size=16,
                           labels_per_class=4, model_dir=str(tmp_path), tasks=2, buffer_size=-1)


# ---- checkpoints and resume ------------------------------------------------------------------

def _tiny_run(data_spec, model_dir):
    """The two-task smoke run above, deterministic, so a resumed run can be compared bit for bit."""
    return dict(
        method="nncsl", data=data_spec, backbone="tiny", width_multiplier=0.5, image_size=16,
        epochs=1, global_batch_size=8, optimizer="lars", learning_rate=0.1, weight_decay=1e-5,
        warmup_epochs=0, blur=False, labels_per_class=4, verbose=0, model_dir=model_dir,
        deterministic=True, method_kwargs=dict(projection_hidden_dim=8, projection_dim=8),
        view_kwargs=dict(local_size=8, num_local=1),
        **nncsl_config.continual("cpu_small", smoke=True))


def _checkpoint_tensors(model_dir):
    """Every tensor of the newest checkpoint in model_dir/checkpoints, by key."""
    reader = tf.train.load_checkpoint(f"{model_dir}/checkpoints")
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
            if not key.startswith("_CHECKPOINTABLE_OBJECT_GRAPH") and key != SAVE_COUNTER}


class _Killed(Exception):
    """Stands for a process killed right after a task's checkpoint."""


@pytest.fixture(scope="module")
def uninterrupted(data_spec):
    """(config, result, newest checkpoint's tensors) of the two tasks run in one call."""
    config = _tiny_run(data_spec, f"ram://continual_tests/{uuid.uuid4().hex}/uninterrupted")
    result = continual_pretrain(**config)
    return config, result, _checkpoint_tensors(config["model_dir"])


def test_a_run_resumed_after_its_first_task_ends_as_an_uninterrupted_one(
        data_spec, uninterrupted, monkeypatch):
    _, expected, expected_tensors = uninterrupted
    config = _tiny_run(data_spec, f"ram://continual_tests/{uuid.uuid4().hex}/resumed")
    save = TaskCheckpoint.save

    def save_then_stop(self, results, **kwargs):
        path = save(self, results, **kwargs)
        if len(results["task_test_top1"]) == 1:
            raise _Killed(path)
        return path

    with monkeypatch.context() as patch:
        patch.setattr(TaskCheckpoint, "save", save_then_stop)
        with pytest.raises(_Killed) as stopped:
            continual_pretrain(**config)
    assert str(stopped.value) == f"{config['model_dir']}/checkpoints/ckpt-1"
    assert tf.io.gfile.exists(f"{config['model_dir']}/checkpoints/{RESULTS_FILE}")

    resumed = continual_pretrain(**config)
    # Only task 2 trained; the lists still cover both tasks.
    assert (resumed["initial_task"], resumed["tasks_run"]) == (1, 1)
    assert expected["initial_task"] == 0 and expected["tasks_run"] == 2
    for key in ("tasks", "task_test_top1", "task_loss", "buffer_sizes", "labeled_batch_sizes",
                "buffer"):
        assert resumed[key] == expected[key], key
    assert len(resumed["buffer"]) == resumed["buffer_sizes"][-1] == 4
    # Deterministic ops: the same weights, teacher, optimizer slots and task count, bit for
    # bit (the teacher of task 2 is the restored end of task 1, copied by start_task).
    tensors = _checkpoint_tensors(config["model_dir"])
    assert sorted(tensors) == sorted(expected_tensors)
    for key, value in expected_tensors.items():
        np.testing.assert_array_equal(tensors[key], value, err_msg=key)
    assert int(tensors["tasks_done/.ATTRIBUTES/VARIABLE_VALUE"]) == 2


def test_a_finished_run_returns_its_results_without_training(uninterrupted, monkeypatch):
    config, expected, _ = uninterrupted

    def no_fit(*args, **kwargs):
        raise AssertionError("a finished continual run trained again")

    monkeypatch.setattr(NNCSL, "fit", no_fit)
    again = continual_pretrain(**config)
    assert (again["initial_task"], again["tasks_run"]) == (2, 0)
    for key in ("task_test_top1", "task_loss", "buffer_sizes", "labeled_batch_sizes", "buffer"):
        assert again[key] == expected[key], key


def test_a_model_dir_of_other_tasks_is_refused(uninterrupted):
    config, _, _ = uninterrupted
    with pytest.raises(ValueError, match="other arguments .*buffer_size: saved 4, now 2"):
        continual_pretrain(**dict(config, buffer_size=2))


def test_restore_encoder_reads_a_continual_run(uninterrupted):
    config, _, tensors = uninterrupted
    encoder, run_config, model_dir, prefix = restore_encoder(config["model_dir"])
    assert run_config["method"] == "nncsl" and model_dir == config["model_dir"]
    assert prefix == f"{config['model_dir']}/checkpoints/ckpt-2"
    # The restored weights are the run's: each is a tensor of its newest checkpoint (found by
    # value: a variable is saved once, under whichever of its object paths comes first).
    saved = {np.asarray(value).tobytes() for value in tensors.values()}
    assert encoder.weights and all(np.asarray(weight).tobytes() in saved
                                   for weight in encoder.weights)
    features = encoder(tf.zeros((2, 16, 16, 3)), training=False)
    assert np.all(np.isfinite(features.numpy()))

"""The continual driver: T tasks in sequence with a buffer, accuracy on the seen classes after each."""

import math

import numpy as np
import pytest

from keras_ssl.configs import nncsl as nncsl_config
from keras_ssl.training.continual import TaskWarmupCosine, continual_pretrain


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


@pytest.fixture(scope="module")
def data_spec(tmp_path_factory):
    # 4 classes, 16 training and 8 test images each, 16 px.
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "four.npz"
    np.savez(path, x_train=rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8),
             y_train=np.arange(64) % 4,
             x_test=rng.integers(0, 256, (32, 16, 16, 3), dtype=np.uint8),
             y_test=np.arange(32) % 4)
    return f"npz:{path.as_posix()}"


def test_two_tasks_report_accuracy_on_the_seen_classes_after_each(data_spec, tmp_path):
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

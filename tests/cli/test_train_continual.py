"""keras-ssl-train with a continual method (NNCSL): task by task, resumable, its flags checked.

Each run is a subprocess of experiments/train.py, as a user runs it: absl's
flags are global, and in-process runs would collide with the flags other
test modules' programs define in the same pytest worker.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.training.test_continual import write_classes_npz

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(ROOT, "experiments", "train.py")


@pytest.fixture(scope="module")
def data_spec(tmp_path_factory):
    # 3 classes: the smoke recipe's num_classes.
    return write_classes_npz(tmp_path_factory.mktemp("data") / "three.npz", 3)


def run_train(*args):
    """(exit status, stdout, stderr) of `experiments/train.py ARGS`."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.run([sys.executable, TRAIN, *args], capture_output=True, text=True,
                             env=env, timeout=600)
    return process.returncode, process.stdout, process.stderr


def _smoke(data_spec, model_dir):
    # The smoke preset (tiny backbone, 16 px, batch 8, 1 epoch a task) with its continual
    # recipe (buffer 4, 1 support per class), 3 tasks of 1 class in place of its 2 (the
    # data has 3 classes); 16 images per class so every task has 2 full batches.
    return ["--method=nncsl", "--preset=cifar10_cpu_small", "--smoke", f"--data={data_spec}",
            "--train_per_class=16", "--labels_per_class=2", "--tasks=3", "--verbose=0",
            f"--model_dir={model_dir}"]


def test_a_continual_run_prints_its_tasks_and_a_rerun_trains_nothing(data_spec, tmp_path):
    status, out, err = run_train(*_smoke(data_spec, tmp_path / "run"))
    assert status == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["method"] == "nncsl" and result["tasks"] == [[0], [1], [2]]
    assert len(result["task_test_top1"]) == 3 and result["tasks_run"] == 3
    assert all(0.0 <= top1 <= 1.0 for top1 in result["task_test_top1"])
    assert all(np.isfinite(loss) for loss in result["task_loss"])
    # The preset's buffer of 4 and 1 support per seen class (the flags left them unset):
    # 2 labels of class 0, then 2 of each of 2 classes, then 1 of each of 3 and a filler.
    assert result["buffer_sizes"] == [2, 4, 4]
    assert result["labeled_batch_sizes"] == [1, 2, 3]
    assert os.path.exists(tmp_path / "run" / "checkpoints" / "ckpt-3.index")
    assert os.path.exists(tmp_path / "run" / "config.json")

    # The same command again: every task is done, so nothing trains.
    status, out, err = run_train(*_smoke(data_spec, tmp_path / "run"))
    assert status == 0, err[-3000:]
    again = json.loads(out.strip().splitlines()[-1])
    assert (again["initial_task"], again["tasks_run"]) == (3, 0)
    assert again["task_test_top1"] == result["task_test_top1"]
    assert again["buffer"] == result["buffer"]


@pytest.mark.parametrize("args, message", [
    (["--tasks=2"], "--tasks=2 must divide the 3 classes"),
    (["--tasks=0", "--preset="], "--tasks: --method=nncsl trains class-incremental tasks"),
    (["--buffer_size=-2"], "--buffer_size"),
])
def test_bad_continual_flags_get_one_clear_message(data_spec, tmp_path, args, message):
    status, out, err = run_train(*_smoke(data_spec, tmp_path / "run"), *args)
    assert status != 0
    assert message in err
    assert "Traceback" not in err
    assert out.strip() == ""  # no result JSON


def test_continual_flags_are_refused_for_other_methods(data_spec, tmp_path):
    status, _, err = run_train("--method=simclr", f"--data={data_spec}",
                               "--backbone=tiny", "--tasks=2", f"--model_dir={tmp_path}")
    assert status == 2
    assert "--tasks=2: only continual methods" in err

"""keras-ssl-train with a continual method (NNCSL): task by task, resumable, its flags checked.

The program runs in this process (`keras_ssl.cli.train.main`, as the console
script calls it, with sys.argv set), which spares each run the seconds a
subprocess spends importing TensorFlow; absl's flags are global, so every run
starts and ends with them unparsed (as tests/experiments/test_multi_worker.py
does between runs).
"""

import json
import os
import sys

import numpy as np
import pytest
from absl import flags

from keras_ssl.cli import train
from tests.training.test_continual import write_classes_npz


@pytest.fixture(scope="module")
def data_spec(tmp_path_factory):
    # 3 classes: the smoke recipe's num_classes.
    return write_classes_npz(tmp_path_factory.mktemp("data") / "three.npz", 3)


def run_train(monkeypatch, capsys, *args):
    """(exit status, stdout, stderr) of `keras-ssl-train ARGS` run in this process."""
    train.define_flags()
    flags.FLAGS.unparse_flags()
    monkeypatch.setattr(sys, "argv", ["keras-ssl-train", *args])
    try:
        train.main()
        status = 0
    except SystemExit as exit:  # absl's app.run ends every run with one
        status = exit.code or 0
    finally:
        flags.FLAGS.unparse_flags()
    out, err = capsys.readouterr()
    return status, out, err


def _smoke(data_spec, model_dir):
    # The smoke preset (tiny backbone, 16 px, batch 8, 1 epoch a task) with its continual
    # recipe (buffer 4, 1 support per class), 3 tasks of 1 class in place of its 2 (the
    # data has 3 classes); 16 images per class so every task has 2 full batches.
    return ["--method=nncsl", "--preset=cifar10_cpu_small", "--smoke", f"--data={data_spec}",
            "--train_per_class=16", "--labels_per_class=2", "--tasks=3", "--verbose=0",
            f"--model_dir={model_dir}"]


def test_a_continual_run_prints_its_tasks_and_a_rerun_trains_nothing(
        data_spec, tmp_path, monkeypatch, capsys):
    status, out, err = run_train(monkeypatch, capsys, *_smoke(data_spec, tmp_path / "run"))
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
    status, out, err = run_train(monkeypatch, capsys, *_smoke(data_spec, tmp_path / "run"))
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
def test_bad_continual_flags_get_one_clear_message(data_spec, tmp_path, monkeypatch, capsys,
                                                   args, message):
    status, out, err = run_train(monkeypatch, capsys, *_smoke(data_spec, tmp_path / "run"), *args)
    assert status != 0
    assert message in err
    assert "Traceback" not in err
    assert out.strip() == ""  # no result JSON


def test_continual_flags_are_refused_for_other_methods(data_spec, tmp_path, monkeypatch, capsys):
    status, _, err = run_train(monkeypatch, capsys, "--method=simclr", f"--data={data_spec}",
                               "--backbone=tiny", "--tasks=2", f"--model_dir={tmp_path}")
    assert status == 2
    assert "--tasks=2: only continual methods" in err

"""train.py end to end on the real CIFAR-10 folder, with a tiny backbone."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CIFAR = os.path.join(ROOT, "..", "shared", "data", "cifar10")
TRAIN = os.path.join(ROOT, "experiments", "train.py")
TINY_RUN = ["--backbone=tiny", "--image_size=32", "--train_per_class=8",
            "--global_batch_size=16", "--epochs=2", "--verbose=0"]


def _train(*args, check=True):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.run([sys.executable, TRAIN, *args], capture_output=True,
                             text=True, env=env, timeout=600)
    if check:
        assert process.returncode == 0, process.stderr[-3000:]
    return process


@pytest.mark.skipif(not os.path.isdir(CIFAR), reason="shared CIFAR-10 folder missing")
def test_train_prints_json_resumes_and_exports(tmp_path):
    model_dir, export_dir = tmp_path / "run", tmp_path / "export"
    process = _train("--method=moco_v2", f"--data={CIFAR}", f"--model_dir={model_dir}",
                     f"--export_dir={export_dir}", "--knn_every_epochs=1", *TINY_RUN)
    result = json.loads(process.stdout.strip().splitlines()[-1])
    assert result["method"] == "moco_v2" and result["epochs"] == 2
    assert result["train_images"] == 80 and result["epochs_run"] == 2
    assert np.isfinite(result["loss"]) and 0.0 < result["knn_top1"] <= 1.0
    assert result["train_images_per_s"] > 0
    assert os.path.exists(os.path.join(model_dir, "checkpoints", "checkpoint"))

    # The same command again resumes after the last epoch: nothing to train,
    # and the kNN of the restored encoder equals the one just reported.
    again = json.loads(_train("--method=moco_v2", f"--data={CIFAR}",
                              f"--model_dir={model_dir}", *TINY_RUN)
                       .stdout.strip().splitlines()[-1])
    assert again["epochs_run"] == 0
    assert again["knn_top1"] == pytest.approx(result["knn_top1"])

    served = tf.saved_model.load(result["saved_model"])
    features = served.serve(tf.zeros((3, 32, 32, 3), tf.uint8))
    assert features.shape == (3, 16)


@pytest.mark.parametrize("args, message", [
    (["--method=simclr", "--data=/no/such/folder"], "/no/such/folder"),
    (["--method=simclr", f"--data={CIFAR}", "--preset=huge"], "cifar10_cpu_small"),
    (["--method=nope", f"--data={CIFAR}"], "simclr"),
])
def test_bad_flags_get_one_clear_message(args, message):
    process = _train(*args, "--epochs=1", check=False)
    assert process.returncode != 0
    assert message in process.stderr
    assert "Traceback" not in process.stderr

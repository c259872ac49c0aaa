"""train.py end to end on the real CIFAR-10 folder, with a tiny backbone."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CIFAR = os.path.join(ROOT, "..", "shared", "data", "cifar10")
TRAIN = os.path.join(ROOT, "experiments", "train.py")
# The run of the session's `trained_run` fixture (tests/experiments/conftest.py),
# without --model_dir and --export_dir: 2 epochs of MoCo v2 (queue, EMA key
# encoder) on 20 images per class, the kNN monitor every epoch.
TRAINED_RUN = ["--method=moco_v2", f"--data={CIFAR}", "--backbone=tiny", "--image_size=32",
               "--train_per_class=20", "--global_batch_size=32", "--epochs=2",
               "--knn_every_epochs=1", "--verbose=0"]


def _train(*args, check=True):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.run([sys.executable, TRAIN, *args], capture_output=True,
                             text=True, env=env, timeout=600)
    if check:
        assert process.returncode == 0, process.stderr[-3000:]
    return process


def resume_a_copy(trained_run, folder):
    """The trained run's command again, on a copy of its model_dir: its JSON result.

    It starts with the other runs on the trained run (tests/experiments/
    conftest.py, `runs_on_trained_run`); the copy leaves the shared run as
    the other tests expect it.
    """
    model_dir = shutil.copytree(trained_run["model_dir"], folder / "run")
    return json.loads(_train(*TRAINED_RUN, f"--model_dir={model_dir}")
                      .stdout.strip().splitlines()[-1])


def test_train_prints_json_resumes_and_exports(trained_run, resumed_copy):
    # The session's shared run is this test's first train.py run (one
    # training subprocess fewer in the suite); it is only read here.
    result = trained_run
    assert result["method"] == "moco_v2" and result["epochs"] == 2
    assert result["train_images"] == 200 and result["epochs_run"] == 2
    assert np.isfinite(result["loss"]) and 0.0 < result["knn_top1"] <= 1.0
    assert result["train_images_per_s"] > 0
    assert os.path.exists(os.path.join(result["model_dir"], "checkpoints", "checkpoint"))

    # The same command again resumes after the last epoch: nothing to train,
    # and the kNN of the restored encoder equals the one just reported.
    again = resumed_copy.result()
    assert again["epochs_run"] == 0
    assert again["knn_top1"] == pytest.approx(result["knn_top1"])

    served = tf.saved_model.load(result["saved_model"])
    features = served.serve(tf.zeros((3, 32, 32, 3), tf.uint8))
    assert features.shape == (3, 16)


# Each case is its own subprocess and its own check. None gets as far as
# importing TensorFlow (keras_ssl/cli checks flags and paths first), so each
# takes well under a second, not the ~7 s of an import.
@pytest.mark.parametrize("args, message", [
    (["--method=simclr", "--data=/no/such/folder"], "/no/such/folder"),
    (["--method=simclr", f"--data={CIFAR}", "--preset=huge"], "cifar10_cpu_small"),
    (["--method=nope", f"--data={CIFAR}"], "simclr"),
    (["--method=simclr", f"--data={CIFAR}", "--global_batch_size=0"], "--global_batch_size"),
    (["--method=byol", f"--data={CIFAR}", "--background=rm,grey"], "grey is not one of"),
    (["--method=byol", f"--data={CIFAR}", "--background=rm",
      "--background_probabilities=remove=high"], "remove=high"),
    (["--method=byol", f"--data={CIFAR}", "--background=rm",
      "--background_probabilities=rm=0.2"], "remove="),
    (["--method=byol", f"--data={CIFAR}", "--saliency=deep"], "--saliency='deep'"),
    (["--method=byol", f"--data={CIFAR}", "--profile_steps=5"], "--profile_steps=5 is not"),
    (["--method=byol", f"--data={CIFAR}", "--profile_steps=4,2"], "--profile_steps=4,2 is not"),
])
def test_bad_flags_get_one_clear_message(args, message):
    process = _train(*args, "--epochs=1", check=False)
    assert process.returncode != 0
    assert message in process.stderr
    assert "Traceback" not in process.stderr
    assert process.stdout.strip() == ""  # no result JSON


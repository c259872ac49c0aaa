"""evaluate.py end to end on a tiny run trained on the real CIFAR-10 folder."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.evaluation.test_eval_plots import assert_real_png
from tests.experiments.test_train import CIFAR, ROOT

EVALUATE = os.path.join(ROOT, "experiments", "evaluate.py")
EXPORT = os.path.join(ROOT, "experiments", "export.py")


def _run(script, *args, check=True):
    # One OpenMP thread: scikit-learn's pools spin-wait next to TensorFlow's
    # threads, which makes k-means and t-SNE on a few hundred points ~10x slower.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS="1")
    process = subprocess.run([sys.executable, script, *args], capture_output=True,
                             text=True, env=env, timeout=600)
    if check:
        assert process.returncode == 0, process.stderr[-3000:]
        return json.loads(process.stdout.strip().splitlines()[-1])
    return process


# The two evaluate.py runs on the session's trained run. They start with the
# other runs on it (tests/experiments/conftest.py, `runs_on_trained_run`),
# each in its own folder; the tests below check one each.

def evaluate_checkpoint(trained_run, folder):
    """Every protocol and the plots on the trained run's checkpoint: (result, plot folder)."""
    plot_dir = folder / "plots"
    return _run(EVALUATE, f"--checkpoint={trained_run['model_dir']}", f"--data={CIFAR}",
                "--train_per_class=20", "--protocol=all", f"--plot={plot_dir}",
                "--plot_max_points=200", "--linear_epochs=10", "--finetune_epochs=1",
                "--finetune_batch_size=32"), plot_dir


def evaluate_saved_model(trained_run, folder):
    """kNN and semi on the trained run's SavedModel alone: the process."""
    # The SavedModel train.py --export_dir wrote (export.py writes the same,
    # through the same keras_ssl.export; test_export.py runs it), copied away
    # from the encoder.keras beside it.
    saved_model = shutil.copytree(trained_run["saved_model"], folder / "saved_model")
    return _run(EVALUATE, f"--saved_model={saved_model}", "--image_size=32",
                f"--data={CIFAR}", "--train_per_class=20", "--protocol=knn,semi",
                "--label_fractions=0.1", check=False)


def test_all_protocols_on_a_checkpoint(trained_run, evaluated_checkpoint):
    result, plot_dir = evaluated_checkpoint.result()
    assert result["protocols"] == ["knn", "linear", "semi", "cluster"]
    assert result["num_classes"] == 10 and result["train_images"] == 200
    assert result["test_images"] == 10000 and result["feature_dim"] == 16
    # The restored encoder scores the kNN that train.py reported for the same
    # bank and test set (a near-tie may flip a handful of the 10,000 votes).
    assert result["knn_top1"] == pytest.approx(trained_run["knn_top1"], abs=2e-3)
    for key in ("knn_top1", "knn_top5", "linear_top1", "linear_top5", "semi_1pct_top1",
                "semi_10pct_top1", "nmi", "ari", "cluster_acc"):
        assert 0.0 <= result[key] <= 1.0, key
    assert result["knn_top5"] >= result["knn_top1"] > 0.0
    assert result["linear_top5"] >= result["linear_top1"] > 0.0
    assert result["cluster_acc"] >= 0.1  # matched accuracy is at least the largest class share
    assert result["semi_mode"] == "fine_tune"
    # 1% and 10% of 20 images per class, rounded half up, at least one per class.
    assert result["semi_1pct_labels"] == 10 and result["semi_10pct_labels"] == 20
    assert result["embedding_plot"] == str(plot_dir / "embedding.png")
    assert result["curves_plot"] == str(plot_dir / "training_curves.png")
    assert_real_png(plot_dir / "embedding.png")
    assert_real_png(plot_dir / "training_curves.png")


def test_saved_model_alone(trained_run, evaluated_saved_model):
    # Without encoder.keras beside it, a SavedModel cannot be fine-tuned: the
    # semi protocol falls back to a linear probe on frozen features and says so.
    process = evaluated_saved_model.result()
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    assert result["semi_mode"] == "linear_frozen" and "frozen features" in process.stderr
    assert 0.0 < result["semi_10pct_top1"] <= 1.0 and "semi_1pct_top1" not in result
    assert result["semi_10pct_labels"] == 20 and result["test_images"] == 10000
    # The uint8 `serve` signature sees the pixels the checkpoint's encoder saw.
    assert result["knn_top1"] == pytest.approx(trained_run["knn_top1"], abs=2e-3)


# None of these gets as far as importing TensorFlow (keras_ssl/cli checks
# flags and paths first), so each subprocess takes well under a second.
@pytest.mark.parametrize("args, message", [
    ([f"--data={CIFAR}"], "--checkpoint"),
    (["--checkpoint=a", "--saved_model=b", f"--data={CIFAR}"], "exactly one"),
    (["--checkpoint=a"], "--data"),
    (["--checkpoint=a", f"--data={CIFAR}", "--protocol=knn,svm"], "knn, linear, semi, cluster"),
    (["--checkpoint=a", f"--data={CIFAR}", "--linear_method=adam"], "sgd, lbfgs"),
    (["--checkpoint=a", f"--data={CIFAR}", "--protocol=semi", "--label_fractions=0.1,2"],
     "--label_fractions"),
    (["--checkpoint=/no/such/run", f"--data={CIFAR}"], "/no/such/run"),
    (["--saved_model=/no/such/model", f"--data={CIFAR}"], "/no/such/model"),
])
def test_bad_flags_get_one_clear_line(args, message):
    process = _run(EVALUATE, *args, check=False)
    assert process.returncode == 2
    assert message in process.stderr and "Traceback" not in process.stderr
    ours = [line for line in process.stderr.splitlines() if line.startswith("evaluate.py:")]
    assert len(ours) == 1 and ours[0].startswith("evaluate.py: error:") and message in ours[0]


def test_bad_data_path_is_named(trained_run):
    # A real run's checkpoint, so that --data is the only thing wrong.
    process = _run(EVALUATE, f"--checkpoint={trained_run['model_dir']}",
                   "--data=/no/such/folder", check=False)
    assert process.returncode == 2
    assert "/no/such/folder" in process.stderr and "Traceback" not in process.stderr
    assert process.stdout.strip() == ""  # no result JSON

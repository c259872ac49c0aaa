"""A tiny trained run shared by the evaluate.py and export.py tests."""

import json
import os

import pytest

from tests.experiments.test_train import CIFAR, _train


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """train.py for 1 epoch on 20 CIFAR-10 images per class; returns its JSON result.

    The kNN monitor runs every epoch so the TensorBoard logs hold a kNN curve.
    """
    if not os.path.isdir(CIFAR):
        pytest.skip("shared CIFAR-10 folder missing")
    model_dir = tmp_path_factory.mktemp("evaluate") / "run"
    process = _train("--method=simclr", f"--data={CIFAR}", f"--model_dir={model_dir}",
                     "--backbone=tiny", "--image_size=32", "--train_per_class=20",
                     "--global_batch_size=32", "--epochs=1", "--knn_every_epochs=1",
                     "--verbose=0")
    return json.loads(process.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def exported_run(trained_run, tmp_path_factory):
    """export.py on `trained_run`; returns its JSON result."""
    from tests.experiments.test_evaluate import EXPORT, _run

    export_dir = tmp_path_factory.mktemp("export") / "encoder"
    return _run(EXPORT, f"--checkpoint={trained_run['model_dir']}", f"--export_dir={export_dir}")

"""A tiny trained run shared by the train.py, evaluate.py and export.py tests."""

import json
import os

import pytest

from tests.experiments.test_train import CIFAR, TRAINED_RUN, _train


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """train.py `TRAINED_RUN` with --export_dir; returns its JSON result.

    One training subprocess (import, decoding the 10,000 CIFAR-10 test images,
    tracing: ~15 s) serves every test that needs a trained run: test_train
    checks it and resumes a copy, evaluate.py and export.py read it. Tests
    must not write into it. The kNN monitor runs every epoch so the
    TensorBoard logs hold a kNN curve (evaluate.py --plot draws it).
    """
    if not os.path.isdir(CIFAR):
        pytest.skip("shared CIFAR-10 folder missing")
    folder = tmp_path_factory.mktemp("trained_run")
    process = _train(*TRAINED_RUN, f"--model_dir={folder / 'run'}",
                     f"--export_dir={folder / 'export'}")
    return json.loads(process.stdout.strip().splitlines()[-1])

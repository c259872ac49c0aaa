"""A tiny trained run shared by the train.py, evaluate.py and export.py tests,
and the runs those tests make on it, started together."""

import functools
import json
import os

import pytest

from tests.experiments.background_runs import started_runs
from tests.experiments.test_evaluate import evaluate_checkpoint, evaluate_saved_model
from tests.experiments.test_export import export_and_serve
from tests.experiments.test_train import CIFAR, TRAINED_RUN, _train, resume_a_copy


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


# The processes tests run on `trained_run`: `job(trained_run, folder)` of
# their test modules, each only reading the trained run.
_RUNS_ON_TRAINED_RUN = {"evaluated_checkpoint": evaluate_checkpoint,
                        "evaluated_saved_model": evaluate_saved_model,
                        "resumed_copy": resume_a_copy,
                        "exported_and_served": export_and_serve}


@pytest.fixture(scope="session")
def runs_on_trained_run(request, trained_run, tmp_path_factory):
    """Every run on the trained run that a collected test asks for, started as
    soon as the trained run exists, two at a time (`background_runs`): the
    long evaluate.py run of every protocol runs beside the three shorter
    ones, where the tests would otherwise wait for each in turn. A test run
    alone (-k) starts only its own.
    """
    jobs = {name: (functools.partial(job, trained_run), ())
            for name, job in _RUNS_ON_TRAINED_RUN.items()}  # the longest first
    with started_runs(request, jobs, tmp_path_factory.mktemp, max_workers=2) as runs:
        yield runs


@pytest.fixture(scope="session")
def evaluated_checkpoint(runs_on_trained_run):
    """Future of test_evaluate.evaluate_checkpoint's (result, plot folder)."""
    return runs_on_trained_run.start("evaluated_checkpoint")


@pytest.fixture(scope="session")
def evaluated_saved_model(runs_on_trained_run):
    """Future of test_evaluate.evaluate_saved_model's process."""
    return runs_on_trained_run.start("evaluated_saved_model")


@pytest.fixture(scope="session")
def resumed_copy(runs_on_trained_run):
    """Future of test_train.resume_a_copy's JSON result."""
    return runs_on_trained_run.start("resumed_copy")


@pytest.fixture(scope="session")
def exported_and_served(runs_on_trained_run):
    """Future of test_export.export_and_serve's (result, images, serving process, outputs)."""
    return runs_on_trained_run.start("exported_and_served")

"""A SIGTERM to one worker of a 2-worker run: both save the same step, stop, and resume there.

Two train.py workers on localhost (MultiWorkerMirroredStrategy, the setting of
tests/experiments/test_worker_loss.py: 40 steps an epoch, 3 epochs). Once the
chief has written its first epoch checkpoint, worker 1 alone gets SIGTERM, as
a preemptible VM would. TensorFlow's PreemptionCheckpointHandler makes the
workers agree on a step; both must save it, exit with status 75 and one
"preempted at step S" line naming the same S, and rerunning both must train
exactly the steps after S.

The module lives outside tests/experiments so that pytest-xdist runs it beside
that directory's worker rather than after it.
"""

import json
import re
import signal

import pytest

from keras_ssl.preemption import PREEMPTED_EXIT_STATUS
from tests.experiments.test_fault_tolerance import checkpoint_tensors
from tests.experiments.test_worker_loss import (EPOCHS, GLOBAL_BATCH, NUM_IMAGES, finish,
                                                start_and_signal_worker1, start_workers)

STEPS_PER_EPOCH = NUM_IMAGES // GLOBAL_BATCH
PREEMPTED_LINE = re.compile(r"preempted at step (\d+) \(epoch (\d+)\): checkpoint written to "
                            r"(\S+); rerun the same command to resume")


@pytest.fixture(scope="module")
def preempted_and_resumed(tmp_path_factory):
    """SIGTERM to worker 1 inside the chief's second epoch, then both rerun.

    Returns (both workers' outputs of the first run and of the rerun, the model directory).
    """
    root = tmp_path_factory.mktemp("multi_worker_preemption")
    data, cluster, workers, _ = start_and_signal_worker1(root, signal.SIGTERM)
    first = finish(workers, 300)
    rerun = finish(start_workers(root, data, cluster, "rerun"), 600)
    return first, rerun, root / "model"


def test_both_workers_save_the_same_step_and_exit_with_status_75(preempted_and_resumed):
    first, _, model_dir = preempted_and_resumed
    steps = set()
    for index, (returncode, stdout, stderr) in enumerate(first):
        assert returncode == PREEMPTED_EXIT_STATUS, f"worker {index}: {stderr[-3000:]}"
        assert stdout.strip() == ""  # no result line: the run did not finish
        lines = [match for match in map(PREEMPTED_LINE.search, stderr.splitlines()) if match]
        assert len(lines) == 1, f"worker {index}: {stderr[-3000:]}"
        steps.add(int(lines[0].group(1)))
        if index == 0:
            chief_line = lines[0]
    (step,) = steps  # the workers agreed
    # Signalled after the first epoch's checkpoint, so inside epoch 2 or later.
    assert STEPS_PER_EPOCH < step < EPOCHS * STEPS_PER_EPOCH
    assert int(chief_line.group(2)) == (step - 1) // STEPS_PER_EPOCH + 1
    if step % STEPS_PER_EPOCH:  # mid-epoch: a step checkpoint in the chief's folder
        assert chief_line.group(3) == str(model_dir / "checkpoints" / "steps" / f"ckpt-{step}")
    assert (model_dir / "checkpoints").exists()


def test_rerunning_both_workers_trains_exactly_the_steps_after_the_saved_one(
        preempted_and_resumed):
    first, rerun, model_dir = preempted_and_resumed
    step = int(PREEMPTED_LINE.search(first[0][2]).group(1))
    for index, (returncode, _, stderr) in enumerate(rerun):
        assert returncode == 0, f"worker {index}: {stderr[-3000:]}"
    result = json.loads(rerun[0][1].strip().splitlines()[-1])
    assert result["initial_step"] == step
    assert result["steps_run"] == EPOCHS * STEPS_PER_EPOCH - step
    assert result["replicas"] == 2
    tensors = checkpoint_tensors(model_dir)
    assert int(tensors["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"]) == (
        EPOCHS * STEPS_PER_EPOCH)

"""SIGTERM outside the training steps: the run stops at once, with status 75 from train.py.

Inside `fit`, `PreemptionCheckpoint.watching()` turns SIGTERM into a step
checkpoint (tests/experiments/test_preemption.py). Around it,
`sigterm_stops_the_run()` makes the signal raise `Terminated`, so set-up, the
final kNN pass or an export do not run on into a scheduler's SIGKILL.
"""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from keras_ssl.preemption import (PREEMPTED_EXIT_STATUS, PreemptionCheckpoint, Terminated,
                                  sigterm_stops_the_run)
from tests.cli.test_train_continual import ROOT


def send_sigterm():
    os.kill(os.getpid(), signal.SIGTERM)


@pytest.fixture
def sigterm_handler_kept():
    """Whatever a test does, the session's own SIGTERM handler is back after it."""
    before = signal.getsignal(signal.SIGTERM)
    yield before
    signal.signal(signal.SIGTERM, before)


def test_sigterm_in_the_block_raises_terminated_and_the_old_handler_returns(
        sigterm_handler_kept):
    with pytest.raises(Terminated, match="outside the training steps"):
        with sigterm_stops_the_run():
            send_sigterm()
    assert signal.getsignal(signal.SIGTERM) is sigterm_handler_kept


def test_inside_fit_the_signal_is_noted_and_after_fit_it_raises_again(sigterm_handler_kept):
    preemption = PreemptionCheckpoint(checkpoint=None)
    with sigterm_stops_the_run():
        with preemption.watching():
            send_sigterm()  # during training: noted for the step's checkpoint, no exception
        assert preemption.requested
        with pytest.raises(Terminated):
            send_sigterm()  # the final evaluation: stop now


def test_train_py_ends_with_status_75_and_one_line_on_sigterm_outside_training(tmp_path):
    # train.py's own main, with a pretrain that is signalled while it "evaluates";
    # a subprocess because absl's flags are global to a process.
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        sys.argv = ["train.py", "--method=simclr", "--preset=cifar10_cpu_small", "--smoke",
                    "--data=npz:{tmp_path}/unused.npz", "--model_dir={tmp_path}/run"]
        import keras_ssl.training

        def pretrain(config):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # an evaluation the signal must cut short
            print("not stopped")

        keras_ssl.training.pretrain = pretrain
        from keras_ssl.cli import train
        train.main()
        """)
    (tmp_path / "unused.npz").write_bytes(b"")
    process = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                             text=True, timeout=120,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert process.returncode == PREEMPTED_EXIT_STATUS, process.stderr[-2000:]
    lines = [line for line in process.stderr.splitlines() if "SIGTERM" in line]
    assert len(lines) == 1, process.stderr[-2000:]
    assert f"{tmp_path}/run hold every finished step; rerun the same command" in lines[0]
    assert "Traceback" not in process.stderr and "not stopped" not in process.stdout

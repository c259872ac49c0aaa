"""Two MultiWorkerMirroredStrategy workers on localhost train like 2 replicas in one process.

Both setups see the same global batches cut the same way (the pipeline gives
replica r of step t the same rows and augmentation seed whether r is a local
device or a worker), and every cross-replica sum has two terms, which float
addition sums identically in either order; so the weights are expected to
agree to float rounding (in practice bit for bit). The tolerance allows for
collective implementations that reduce in another order.

Importing TensorFlow and tracing take most of a run this small, so the three
processes start once for every method checked here, and at the same time:
the two workers and the 2-replica reference each run experiments/train.py
once per method, in the same order.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tests.experiments.test_fault_tolerance import checkpoint_tensors, write_npz

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(ROOT, "experiments", "train.py")
# Two epochs (the second reshuffles and re-augments every example) of 6 steps.
NUM_IMAGES, EPOCHS, GLOBAL_BATCH = 48, 2, 8

# MoCo gathers keys across workers into its 12-key queue (the second step's
# keys wrap around it) and shuffles BatchNorm across them; InterCLR also runs
# the epoch feature pass over both workers before training and clusters the
# gathered features. The instance classifier keeps different rows on each
# replica and gathers them across workers into each checkpoint. All at their
# smoke recipe, on 32-px images.
METHODS = ("moco_v2", "interclr", "instance_classifier")

# Runs experiments/train.py once per command line of argv[1] (a JSON list of
# {"argv": [...], "tmpdir": ...}) in one process.
DRIVER = textwrap.dedent(f"""
    import json
    import runpy
    import sys
    import tempfile

    from absl import flags

    from keras_ssl import distribute

    # A MultiWorkerMirroredStrategy starts the worker's server and collective
    # runtime when it is built, so a process builds one: the later runs reuse
    # the strategy the first run built.
    strategies, make_strategy = {{}}, distribute.make_strategy

    def make_strategy_once(name="default", **kwargs):
        if name not in strategies:
            strategies[name] = make_strategy(name, **kwargs)
        return strategies[name]

    distribute.make_strategy = make_strategy_once
    for run in json.loads(sys.argv[1]):
        # The non-chief worker's scratch directory (see worker_directory).
        tempfile.tempdir = run["tmpdir"]
        flags.FLAGS.unparse_flags()  # no flag of the previous run carries over
        sys.argv = [{TRAIN!r}, *run["argv"]]
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        except SystemExit as exit:  # absl's app.run ends every run with one
            if exit.code:
                raise
""")


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def wait_all(processes, timeout=900):
    """Waits for the processes; once one fails, kills the others (a worker
    would otherwise wait for its peer's collectives until the timeout)."""
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in processes):
            if time.monotonic() > deadline or any(p.returncode for p in processes):
                break
            time.sleep(0.2)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Trains every method of METHODS with 2 workers and with 2 local replicas.

    Returns the runs' directory and each process's (return code, stdout,
    stderr) under "local" (the reference), "worker0" (the chief) and
    "worker1". The reference saves in `local/<method>`, the chief in
    `cluster/<method>`; each process has a scratch directory per method,
    `scratch/<process>/<method>`.
    """
    root = tmp_path_factory.mktemp("multi_worker")
    data = "npz:" + write_npz(root / "train.npz", NUM_IMAGES).as_posix()
    cluster = [f"localhost:{port}" for port in free_ports(2)]
    # InterCLR's k-means and memory kernels are XLA-compiled: at LLVM's
    # default optimisation that is a fifth of a process's work. Both setups
    # run the same kernels either way, and nothing here times them.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", XLA_FLAGS=" ".join(
        [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]).strip())
    processes, logs = {}, {}
    for process in ("local", "worker0", "worker1"):
        if process == "local":
            setup, process_env = "local", env
            strategy_flags = ["--strategy=mirrored", "--cpu_replicas=2"]
        else:
            task = {"type": "worker", "index": int(process[-1])}
            setup, strategy_flags = "cluster", ["--strategy=multi_worker"]
            process_env = dict(env, TF_CONFIG=json.dumps({"cluster": {"worker": cluster},
                                                          "task": task}))
        plan = []
        for method in METHODS:
            scratch = root / "scratch" / process / method
            scratch.mkdir(parents=True)
            plan.append({"tmpdir": str(scratch), "argv": [
                f"--method={method}", "--preset=cifar10_cpu_small", "--smoke",
                "--train_per_class=0", "--image_size=32", f"--data={data}", "--backbone=tiny",
                f"--global_batch_size={GLOBAL_BATCH}", f"--epochs={EPOCHS}", "--knn_k=5",
                "--verbose=0", "--deterministic", f"--model_dir={root / setup / method}",
                *strategy_flags]})
        # Files, not pipes: nothing reads a pipe while the processes run.
        logs[process] = (open(root / f"{process}.out", "w+"), open(root / f"{process}.err", "w+"))
        processes[process] = subprocess.Popen(
            [sys.executable, "-c", DRIVER, json.dumps(plan)], cwd=ROOT, env=process_env,
            stdout=logs[process][0], stderr=logs[process][1], text=True)
    wait_all(list(processes.values()))
    outputs = {}
    for process, files in logs.items():
        for file in files:
            file.seek(0)
        outputs[process] = (processes[process].returncode, *(file.read() for file in files))
        for file in files:
            file.close()
    return root, outputs


def results(stdout):
    """The JSON line of each run, by method."""
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return {result["method"]: result for result in lines}


@pytest.mark.parametrize("method", METHODS)
def test_two_workers_match_two_local_replicas(runs, method):
    root, outputs = runs
    for process, (returncode, _, stderr) in outputs.items():
        assert returncode == 0, f"{process}: {stderr[-3000:]}"
    local_result = results(outputs["local"][1])[method]
    chief_result = results(outputs["worker0"][1])[method]
    assert outputs["worker1"][1].strip() == ""  # only the chief reports
    assert chief_result["replicas"] == local_result["replicas"] == 2
    assert chief_result["loss"] == pytest.approx(local_result["loss"], rel=1e-5)
    # The other worker saved into its own scratch directory and removed it.
    assert not any((root / "scratch" / "worker1" / method).iterdir())

    local_tensors = checkpoint_tensors(root / "local" / method)
    cluster_tensors = checkpoint_tensors(root / "cluster" / method)
    assert local_tensors.keys() == cluster_tensors.keys()
    for key, value in local_tensors.items():
        np.testing.assert_allclose(cluster_tensors[key], value, rtol=1e-5, atol=1e-6,
                                   err_msg=key)
    # The run really trained: the optimizer took EPOCHS epochs of NUM_IMAGES images.
    assert int(cluster_tensors["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"]) == (
        EPOCHS * NUM_IMAGES // GLOBAL_BATCH)

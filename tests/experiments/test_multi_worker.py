"""Two MultiWorkerMirroredStrategy workers on localhost train like 2 replicas in one process.

Both setups see the same global batches cut the same way (the pipeline gives
replica r of step t the same rows and augmentation seed whether r is a local
device or a worker), and every cross-replica sum has two terms, which float
addition sums identically in either order; so the weights are expected to
agree to float rounding (in practice bit for bit). The tolerance allows for
collective implementations that reduce in another order.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.experiments.test_fault_tolerance import checkpoint_tensors, write_npz

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(ROOT, "experiments", "train.py")


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


# MoCo gathers keys and shuffles BatchNorm across workers; InterCLR (its
# smoke recipe) also runs the epoch feature pass over both workers before
# training and clusters the gathered features.
@pytest.mark.parametrize("method_flags, global_batch", [
    (["--method=moco_v2"], 16),
    (["--method=interclr", "--preset=cifar10_cpu_small", "--smoke", "--train_per_class=0",
      "--image_size=32"], 8)])
def test_two_workers_match_two_local_replicas(tmp_path, method_flags, global_batch):
    data = "npz:" + write_npz(tmp_path / "train.npz", 96).as_posix()
    common = [sys.executable, TRAIN, *method_flags, f"--data={data}", "--backbone=tiny",
              f"--global_batch_size={global_batch}", "--epochs=2", "--knn_k=5",
              "--verbose=0", "--deterministic"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

    local = subprocess.run([*common, f"--model_dir={tmp_path / 'local'}", "--strategy=mirrored",
                            "--cpu_replicas=2"], capture_output=True, text=True, env=env,
                           timeout=600)
    assert local.returncode == 0, local.stderr[-3000:]
    local_result = json.loads(local.stdout.strip().splitlines()[-1])

    cluster = [f"localhost:{port}" for port in free_ports(2)]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    workers = []
    for index in range(2):
        tf_config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}
        workers.append(subprocess.Popen(
            [*common, f"--model_dir={tmp_path / 'cluster'}", "--strategy=multi_worker"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(env, TF_CONFIG=json.dumps(tf_config), TMPDIR=str(scratch))))
    try:
        outputs = [worker.communicate(timeout=600) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]

    chief_result = json.loads(outputs[0][0].strip().splitlines()[-1])
    assert outputs[1][0].strip() == ""  # only the chief reports
    assert chief_result["replicas"] == local_result["replicas"] == 2
    assert chief_result["loss"] == pytest.approx(local_result["loss"], rel=1e-5)
    # The other worker saved into its own scratch directory and removed it.
    assert not any(scratch.iterdir())

    local_tensors = checkpoint_tensors(tmp_path / "local")
    cluster_tensors = checkpoint_tensors(tmp_path / "cluster")
    assert local_tensors.keys() == cluster_tensors.keys()
    for key, value in local_tensors.items():
        np.testing.assert_allclose(cluster_tensors[key], value, rtol=1e-5, atol=1e-6,
                                   err_msg=key)
    # The run really trained: the optimizer took 2 epochs of 96 images.
    assert int(cluster_tensors["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"]) == (
        2 * 96 // global_batch)

"""A lost worker stops a MultiWorkerMirroredStrategy job with one clear error; a rerun resumes.

The process test starts two train.py workers on localhost, SIGKILLs worker 1
as soon as the chief has written its first epoch checkpoint (inside the next
epoch: an epoch is 40 steps), and expects worker 0 to exit with status 1 and
one error line naming worker 1, instead of waiting on its collectives
forever. Rerunning both with the same TF_CONFIG must finish the run from the
chief's last checkpoint. The other tests check, without processes, how
`worker_lost_error` reads TensorFlow's errors and what `configure_heartbeat`
asks of the coordination service.
"""

import json
import os
import signal
import subprocess
import sys
import time
import types

import pytest
import tensorflow as tf

from keras_ssl.distribute.worker_health import (HEARTBEAT_TIMEOUT_SECONDS, WorkerLostError,
                                                configure_heartbeat, stop_on_worker_loss,
                                                worker_lost_error)
from tests.experiments.test_fault_tolerance import (checkpoint_tensors,
                                                    newest_checkpoint_number, write_npz)
from tests.experiments.test_multi_worker import ROOT, TRAIN, free_ports

NUM_IMAGES, EPOCHS, GLOBAL_BATCH = 320, 3, 8
# How long worker 0 may take to stop after worker 1 is killed. A killed peer
# closes its sockets, so its collectives fail within seconds; a silent one is
# declared lost after HEARTBEAT_TIMEOUT_SECONDS, and shutting the runtime
# down may take as long again. The rest is slack for a loaded host: this only
# tells a hang from a stop.
STOP_BOUND_SECONDS = 2 * HEARTBEAT_TIMEOUT_SECONDS + 40



def start_workers(root, data, cluster, run_name):
    """Both workers of one run, logging to files; returns [(process, (stdout, stderr))]."""
    model_dir = root / "model"
    workers = []
    for index in range(2):
        tmpdir = root / run_name / f"tmp{index}"  # worker 1's scratch checkpoints
        tmpdir.mkdir(parents=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TMPDIR=str(tmpdir),
                   TF_CONFIG=json.dumps({"cluster": {"worker": cluster},
                                         "task": {"type": "worker", "index": index}}))
        logs = tuple(open(root / run_name / f"worker{index}.{stream}", "w+")
                     for stream in ("out", "err"))
        command = [sys.executable, TRAIN, "--method=moco_v2", "--preset=cifar10_cpu_small", "--smoke",
                   "--train_per_class=0", "--image_size=32", f"--data={data}",
                   "--backbone=tiny", f"--global_batch_size={GLOBAL_BATCH}",
                   f"--epochs={EPOCHS}", "--knn_k=5", "--verbose=0",
                   "--strategy=multi_worker", f"--model_dir={model_dir}"]
        workers.append((subprocess.Popen(command, cwd=ROOT, env=env, stdout=logs[0],
                                         stderr=logs[1], text=True), logs))
    return workers


def finish(workers, timeout):
    """Waits up to `timeout` s for every worker; kills the rest. Returns
    [(return code or None if it had to be killed, stdout, stderr)]."""
    deadline = time.monotonic() + timeout
    outputs = []
    for process, logs in workers:
        try:
            returncode = process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            returncode = None
        texts = []
        for log in logs:
            log.seek(0)
            texts.append(log.read())
            log.close()
        outputs.append((returncode, *texts))
    return outputs


def start_and_signal_worker1(root, signum):
    """Starts both workers on new data in `root` and sends worker 1 `signum` once the
    chief has written its first epoch checkpoint (so inside epoch 2).

    Returns (the data spec, the cluster, the workers, when the signal was sent).
    """
    data = "npz:" + write_npz(root / "train.npz", NUM_IMAGES).as_posix()
    cluster = [f"localhost:{port}" for port in free_ports(2)]
    workers = start_workers(root, data, cluster, "first")
    (chief, _), (worker1, _) = workers
    try:
        deadline = time.monotonic() + 600
        while newest_checkpoint_number(root / "model") is None:
            if chief.poll() is not None or worker1.poll() is not None:
                pytest.fail(f"a worker ended before the first checkpoint: {finish(workers, 1)}")
            if time.monotonic() > deadline:
                pytest.fail(f"no checkpoint after 600 s: {finish(workers, 1)}")
            time.sleep(0.05)
        worker1.send_signal(signum)
        return data, cluster, workers, time.monotonic()
    except BaseException:
        finish(workers, 0)
        raise


@pytest.fixture(scope="module")
def lost_and_resumed(tmp_path_factory):
    """Kills worker 1 inside the chief's second epoch, then reruns both.

    Returns (epoch of the chief's newest checkpoint after the kill, seconds
    worker 0 took to stop, both workers' outputs of the first run and of the
    rerun, the model directory).
    """
    root = tmp_path_factory.mktemp("worker_loss")
    data, cluster, workers, killed = start_and_signal_worker1(root, signal.SIGKILL)
    model_dir = root / "model"
    first = finish(workers, STOP_BOUND_SECONDS)
    stop_seconds = time.monotonic() - killed
    epoch_at_kill = newest_checkpoint_number(model_dir)
    # The same command line and TF_CONFIG (same ports) for both workers.
    rerun = finish(start_workers(root, data, cluster, "rerun"), 600)
    return epoch_at_kill, stop_seconds, first, rerun, model_dir


def test_killed_worker_stops_the_other_with_one_error_naming_it(lost_and_resumed):
    epoch_at_kill, stop_seconds, first, _, _ = lost_and_resumed
    (returncode, stdout, stderr), (killed_code, _, _) = first
    assert killed_code == -signal.SIGKILL
    assert returncode is not None, f"worker 0 still ran {stop_seconds:.0f} s after the kill"
    assert returncode == 1, stderr[-3000:]
    assert stdout.strip() == ""  # no result line: the run did not finish
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("train.py: error: lost /job:worker/task:1 of the multi-worker job")
    assert "/job:worker/task:0 stopped" in last_line
    assert "resumes from the chief's last checkpoint" in last_line
    # Killed inside the run: the chief saved at least one epoch and not the last.
    assert 1 <= epoch_at_kill < EPOCHS


def test_rerunning_both_workers_resumes_from_the_chiefs_checkpoint(lost_and_resumed):
    epoch_at_kill, _, _, rerun, model_dir = lost_and_resumed
    for index, (returncode, _, stderr) in enumerate(rerun):
        assert returncode == 0, f"worker {index}: {stderr[-3000:]}"
    result = json.loads(rerun[0][1].strip().splitlines()[-1])
    assert rerun[1][1].strip() == ""  # only the chief reports
    assert result["initial_epoch"] == epoch_at_kill
    assert result["epochs_run"] == EPOCHS - epoch_at_kill
    assert result["replicas"] == 2
    assert newest_checkpoint_number(model_dir) == EPOCHS
    # No step lost or repeated: the optimizer took EPOCHS whole epochs in all.
    tensors = checkpoint_tensors(model_dir)
    assert int(tensors["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"]) == (
        EPOCHS * NUM_IMAGES // GLOBAL_BATCH)


# TensorFlow's messages, as two workers on localhost printed them (abridged).
RESET_BY_PEER = (
    "Graph execution error:\n\nDetected at node allgather_1/CollectiveGatherV2 defined at "
    "(most recent call last):\n  File \"train.py\", line 18\n\n"
    "Collective ops is aborted by: recvmsg:Connection reset by peer\n"
    "Additional GRPC error information from remote target /job:worker/replica:0/task:1 "
    "while calling /tensorflow.WorkerService/RecvBuf:\n:UNKNOWN:Error received from peer  "
    "{grpc_status:14, grpc_message:\"recvmsg:Connection reset by peer\"}\n"
    "The error could be from a previous operation. Restart your program to reset.\n"
    "\t [[{{node allgather_1/CollectiveGatherV2}}]] [Op:__inference_multi_step_on_iterator_3344]")
NO_HEARTBEAT = (
    "Graph execution error:\n\nCollective ops is aborted by: Error reported from "
    "/job:worker/task:2: The following tasks are unhealthy (stopped sending heartbeats):\n"
    "/job:worker/replica:0/task:2\nThe tasks have crashed.")


def strategy_of(task_index, num_workers):
    """A stand-in for a multi-worker strategy: what worker_lost_error reads of it."""
    cluster = tf.train.ClusterSpec({"worker": [f"localhost:{1000 + i}"
                                               for i in range(num_workers)]})
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        cluster, task_type="worker", task_id=task_index)
    return types.SimpleNamespace(cluster_resolver=resolver)


def test_reads_the_lost_task_and_the_reason_from_tensorflows_error():
    error = worker_lost_error(tf.errors.UnavailableError(None, None, RESET_BY_PEER),
                              strategy_of(0, 2), checkpoint_dir="/runs/moco/checkpoints")
    assert isinstance(error, WorkerLostError)
    assert (error.lost_task, error.this_task) == ("/job:worker/task:1", "/job:worker/task:0")
    assert error.cause == "recvmsg:Connection reset by peer"
    assert str(error) == (
        "lost /job:worker/task:1 of the multi-worker job (recvmsg:Connection reset by peer); "
        "/job:worker/task:0 stopped. Restart every worker with the same command: training "
        "resumes from the chief's last checkpoint in /runs/moco/checkpoints.")

    error = worker_lost_error(tf.errors.UnavailableError(None, None, NO_HEARTBEAT),
                              strategy_of(1, 3))
    assert error.lost_task == "/job:worker/task:2"
    assert error.cause.endswith("(stopped sending heartbeats)")


def test_an_unnamed_peer_is_named_only_when_it_is_the_only_one():
    aborted = tf.errors.CancelledError(None, None, "Collective ops is aborted by: CANCELLED")
    assert worker_lost_error(aborted, strategy_of(1, 2)).lost_task == "/job:worker/task:0"
    error = worker_lost_error(aborted, strategy_of(0, 3))
    assert error.lost_task is None
    assert str(error).startswith("lost a peer task of the multi-worker job (CANCELLED)")
    # The task's own name in the message (its devices) is not a lost peer.
    own = tf.errors.UnavailableError(
        None, None, "Collective ops is aborted by: x on /job:worker/replica:0/task:0/device:CPU:0")
    assert worker_lost_error(own, strategy_of(0, 3)).lost_task is None


def test_other_errors_and_single_process_runs_pass_unchanged(monkeypatch):
    # Unavailable without a word about the cluster: e.g. a remote file system.
    storage = tf.errors.UnavailableError(None, None, "gs://bucket/ckpt: 503 Service Unavailable")
    assert worker_lost_error(storage, strategy_of(0, 2)) is None
    assert worker_lost_error(ValueError("/job:worker/task:1 collective"), strategy_of(0, 2)) is None
    monkeypatch.delenv("TF_CONFIG", raising=False)
    reset = tf.errors.UnavailableError(None, None, RESET_BY_PEER)
    assert worker_lost_error(reset, types.SimpleNamespace()) is None  # no cluster
    with pytest.raises(tf.errors.UnavailableError):
        with stop_on_worker_loss(types.SimpleNamespace()):
            raise reset


def test_the_guard_reraises_a_loss_found_down_the_exception_chain():
    reset = tf.errors.UnavailableError(None, None, RESET_BY_PEER)
    with pytest.raises(WorkerLostError, match="lost /job:worker/task:1") as raised:
        with stop_on_worker_loss(strategy_of(0, 2)):
            try:
                raise reset
            except tf.errors.UnavailableError as error:
                raise RuntimeError("fit failed") from error
    assert raised.value.__cause__.__cause__ is reset


@pytest.fixture
def coordination_config():
    """The eager context's coordination-service configuration, put back afterwards
    (it is only read when a multi-worker strategy starts its server)."""
    from tensorflow.python.eager import context

    saved = context.context()._coordination_service_config
    context.context()._coordination_service_config = None
    yield context.context()
    context.context()._coordination_service_config = saved


def test_the_heartbeat_timeout_is_configured_before_the_strategy_is_built(coordination_config):
    resolver = strategy_of(1, 2).cluster_resolver
    configure_heartbeat(resolver)
    config = coordination_config.coordination_service
    assert config.heartbeat_timeout_in_ms == HEARTBEAT_TIMEOUT_SECONDS * 1000
    assert config.service_type == "standalone"
    assert config.service_leader == "/job:worker/replica:0/task:0"
    assert [(job.name, job.num_tasks) for job in config.coordinated_job_list] == [("worker", 2)]
    # A configuration made before (by the user) is kept.
    configure_heartbeat(resolver, timeout_seconds=99)
    assert coordination_config.coordination_service.heartbeat_timeout_in_ms == (
        HEARTBEAT_TIMEOUT_SECONDS * 1000)


def test_no_heartbeat_is_configured_outside_a_cluster_or_for_an_evaluator(coordination_config):
    configure_heartbeat(tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec({})))
    evaluator = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec({"worker": ["localhost:1000"], "evaluator": ["localhost:1001"]}),
        task_type="evaluator", task_id=0)
    configure_heartbeat(evaluator)
    assert coordination_config.coordination_service is None

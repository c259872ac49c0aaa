"""Worker loss in a MultiWorkerMirroredStrategy job: bounded detection, one clear error.

How TensorFlow 2.21 notices a lost worker (read from
`tensorflow/python/distribute/collective_all_reduce_strategy.py` and checked
with two workers on localhost):

- A killed process (SIGKILL, the OOM killer, a crash) closes its sockets:
  the collective waiting on it fails with `UnavailableError` ("Connection
  reset by peer" from the peer's RecvBuf), or the coordination service
  (below) reports the task first; either way the other worker stopped within
  seconds in our runs, and every later collective fails the same way.
- A worker that is still there but silent (a frozen or vanished machine, a
  network partition, SIGSTOP) is found by the coordination service, which
  MultiWorkerMirroredStrategy always starts: each task sends heartbeats to
  the leader (the chief, else worker 0), and after `HEARTBEAT_TIMEOUT_SECONDS`
  without one the service aborts every worker's collectives with
  `UnavailableError` ("stopped sending heartbeats"). With the service on,
  the strategy's Python health-check thread (`_enable_check_health` and its
  `_check_health_*` settings) is switched off, so those settings do nothing.

Not used: `CommunicationOptions(timeout_seconds=...)`. It bounds every
collective, including the legitimate waits of a worker for the chief's
chief-only work (the kNN monitor, exports), and TensorFlow documents it as a
debugging aid that starts a thread per collective.

TensorFlow's error is a graph-execution traceback that names the lost task
somewhere in its middle; `stop_on_worker_loss` turns it into a
`WorkerLostError` that names it and says how to resume.
"""

import contextlib
import os
import re

import tensorflow as tf

# Seconds without a heartbeat after which the coordination service declares a
# task lost. A killed process is seen at once (its connections close); this
# only bounds the wait for a silent one. It is TensorFlow 2.21's default
# (kDefaultHeartbeatTimeoutMs of its coordination service), set here so
# that the bound is ours to document. Measured with two workers on
# this project's 2-core test host: a SIGSTOPped worker aborted the other's
# collectives 6 s after the signal with 10 s (44 s with 60 s), and the
# survivor's process took up to one more timeout to shut its runtime down.
# Heartbeats come from a C++ thread, so a worker busy in Python or in a long
# op still sends them; shorter values risk false alarms on a loaded host,
# longer ones delay the restart of a job whose machine vanished.
HEARTBEAT_TIMEOUT_SECONDS = 10

# What a collective raises when a peer is gone (Unavailable: unreachable or
# aborted by the heartbeat check; DeadlineExceeded: an RPC to it timed out;
# Cancelled and Aborted: the collective was torn down under another op).
_LOSS_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                tf.errors.CancelledError, tf.errors.AbortedError)
# "/job:worker/replica:0/task:1" and "/job:worker/task:1" name the same task.
_TASK_NAME = re.compile(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)")
# Words that tie an error of `_LOSS_ERRORS` to the cluster rather than to,
# say, a remote file system that is briefly unavailable.
_CLUSTER_WORDS = ("collective", "heartbeat", "coordination service")


class WorkerLostError(RuntimeError):
    """A task of the multi-worker job died or stopped answering; this one stopped.

    Attributes:
        lost_task: the lost task, like "/job:worker/task:1", or None when
            TensorFlow's error did not say and the cluster has several peers.
        this_task: the task that raised it, like "/job:worker/task:0".
        cause: TensorFlow's own one-line reason.
    """

    def __init__(self, lost_task, this_task, cause, checkpoint_dir=None):
        self.lost_task, self.this_task, self.cause = lost_task, this_task, cause
        where = f" in {checkpoint_dir}" if checkpoint_dir else ""
        super().__init__(
            f"lost {lost_task or 'a peer task'} of the multi-worker job ({cause}); "
            f"{this_task} stopped. Restart every worker with the same command: training "
            f"resumes from the chief's last checkpoint{where}.")


def configure_heartbeat(cluster_resolver=None, timeout_seconds=HEARTBEAT_TIMEOUT_SECONDS):
    """Starts the coordination service with our heartbeat timeout.

    Call before building the MultiWorkerMirroredStrategy (and before any op
    runs): the strategy then keeps this configuration instead of making its
    own, which is the same but for TensorFlow's default timeout. Does nothing
    if the service is already configured or this task is not a worker or the
    chief (an evaluator takes no part in collectives).

    Args:
        cluster_resolver: the job's resolver (default: TF_CONFIG's).
        timeout_seconds: seconds without a heartbeat before a task is lost.
    """
    # TensorFlow has no public setter for the heartbeat; this is the call
    # MultiWorkerMirroredStrategy (and ParameterServerStrategy, with 5 s)
    # makes itself.
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    if context.context().coordination_service is not None:
        return
    resolver = cluster_resolver or tf.distribute.cluster_resolver.TFConfigClusterResolver()
    cluster_spec = multi_worker_util.normalize_cluster_spec(resolver.cluster_spec())
    if not cluster_spec.as_dict() or resolver.task_type not in ("chief", "worker"):
        return
    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=cluster_spec.num_tasks(job))
            for job in ("chief", "worker") if job in cluster_spec.jobs]
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(cluster_spec),
        heartbeat_timeout_in_ms=int(timeout_seconds * 1000),
        coordinated_jobs=jobs)


def _cluster_of(strategy):
    """(this task's name, the other tasks' names), or (None, []) outside a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is None:
        if "TF_CONFIG" not in os.environ:
            return None, []
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if not getattr(resolver, "task_type", None):
        return None, []
    this_task = f"/job:{resolver.task_type}/task:{int(resolver.task_id or 0)}"
    tasks = [f"/job:{job}/task:{index}"
             for job, addresses in resolver.cluster_spec().as_dict().items()
             for index in (range(len(addresses)) if isinstance(addresses, list)
                           else sorted(addresses))]
    return this_task, [task for task in tasks if task != this_task]


def _cause(message):
    """TensorFlow's reason in one line, without the traceback of graph nodes."""
    found = re.search(r"aborted by: (.+)", message)
    if found:
        return found.group(1).strip().rstrip(":")
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def worker_lost_error(error, strategy=None, checkpoint_dir=None):
    """The `WorkerLostError` that `error` means, or None if it is not a worker loss.

    Args:
        error: an exception raised by a multi-worker run (its `__cause__`
            and `__context__` chain is searched too).
        strategy: the run's strategy (default: the cluster of TF_CONFIG).
        checkpoint_dir: where the chief's checkpoints are, for the message.
    """
    this_task, peers = _cluster_of(strategy)
    if this_task is None or not peers:
        return None
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, _LOSS_ERRORS):
            message = str(getattr(error, "message", "") or error)
            named = [f"/job:{job}/task:{index}" for job, index in _TASK_NAME.findall(message)]
            named = [task for task in dict.fromkeys(named) if task in peers]
            if named or any(word in message.lower() for word in _CLUSTER_WORDS):
                # With one peer, a collective that lost a peer lost that one.
                lost = named[0] if named else (peers[0] if len(peers) == 1 else None)
                return WorkerLostError(lost, this_task, _cause(message), checkpoint_dir)
        error = error.__cause__ or error.__context__
    return None


@contextlib.contextmanager
def stop_on_worker_loss(strategy=None, checkpoint_dir=None):
    """Re-raises TensorFlow's error for a lost worker as a `WorkerLostError`.

    Wrap whatever runs collectives (`fit`, epoch feature passes, saves).
    Other errors, and every error outside a multi-worker job, pass unchanged.

    Args:
        strategy: the run's strategy (default: the cluster of TF_CONFIG).
        checkpoint_dir: where the chief's checkpoints are, for the message.

    Example:
    >>> with stop_on_worker_loss(strategy, checkpoint_dir):
    ...     model.fit(dataset, epochs=10, callbacks=[checkpoint])
    """
    try:
        yield
    except Exception as error:
        lost = worker_lost_error(error, strategy, checkpoint_dir)
        if lost is None:
            raise
        raise lost from error

"""Builds a tf.distribute strategy from a flag value."""

import json
import os
import tempfile

import tensorflow as tf

from keras_ssl.distribute.worker_health import configure_heartbeat

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def split_cpu(num_devices):
    """Splits the host CPU into `num_devices` logical devices.

    Must run before TensorFlow initialises its devices (before any op runs).
    This is how mirrored training is tested on a machine without accelerators.
    """
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_devices)
    except RuntimeError:
        existing = len(tf.config.list_logical_devices("CPU"))
        if existing != num_devices:
            raise RuntimeError(
                f"cpu_replicas={num_devices} must be set before TensorFlow starts; "
                f"the CPU is already split into {existing} device(s).") from None


def make_strategy(name="default", *, cpu_replicas=0, tpu_address=""):
    """Returns the strategy for `--strategy`.

    Args:
        name: "default" (one device), "mirrored" (all local GPUs, or the CPU
            devices when `cpu_replicas` > 0), "multi_worker" (reads TF_CONFIG;
            a lost worker aborts the others' collectives within
            `worker_health.HEARTBEAT_TIMEOUT_SECONDS`),
            "tpu" (`tpu_address` or the environment's TPU).
        cpu_replicas: split the CPU into this many logical devices and mirror
            over them (0: leave the CPU as one device).
        tpu_address: TPU name or grpc address for "tpu".
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"--strategy={name!r} is not one of {', '.join(STRATEGIES)}.")
    if cpu_replicas:
        split_cpu(cpu_replicas)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if cpu_replicas and not tf.config.list_physical_devices("GPU"):
            # Reduce on one CPU and broadcast instead of TF's default
            # collective ops. Collectives pair up by (group key, instance
            # key); every MirroredStrategy restarts at group key 1 and
            # instance key 100, and the runtime caches each instance's
            # type, dtype and shape for the life of the process. A second
            # strategy in the same process (tests, notebooks, train then
            # evaluate) then reuses keys whose cached shape belongs to the
            # first one's collectives and aborts ("Shape mismatch in the
            # collective instance 100", "expected type 0 and data_type 1").
            # ReductionToOneDevice uses no collective keys; on one host's
            # logical CPUs it costs nothing. GPUs keep TF's default (NCCL
            # collectives): create one mirrored strategy per process there.
            return tf.distribute.MirroredStrategy(
                devices=[d.name for d in tf.config.list_logical_devices("CPU")],
                cross_device_ops=tf.distribute.ReductionToOneDevice())
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        _check_tf_config()
        # Created first thing in the process, before any op runs: the
        # collective runtime is configured when the strategy is built. A
        # killed worker stops the others within seconds, a silent one within
        # HEARTBEAT_TIMEOUT_SECONDS (see keras_ssl.distribute.worker_health).
        configure_heartbeat()
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _check_tf_config():
    """Fails early, with one clear message, on a missing or malformed TF_CONFIG."""
    if "TF_CONFIG" not in os.environ:
        raise ValueError("--strategy=multi_worker needs the TF_CONFIG "
                         "environment variable (cluster and task).")
    try:
        config = json.loads(os.environ["TF_CONFIG"])
        workers = config["cluster"]["worker"]
        task = config["task"]
        task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            "TF_CONFIG must be JSON like {\"cluster\": {\"worker\": [\"host1:port\", "
            "\"host2:port\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}; "
            f"got {os.environ['TF_CONFIG']!r} ({error}).") from None
    if not workers:
        raise ValueError("TF_CONFIG lists no workers.")


def task_of(strategy):
    """(task_type, task_id) of this process; (None, 0) outside a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy):
    """Whether this process writes the run's outputs (checkpoints, logs, exports, results).

    Single-process strategies are always chief. In a cluster the chief is
    the "chief" task, or worker 0 when the cluster has no "chief" task (the
    TF_CONFIG convention MultiWorkerMirroredStrategy follows).
    """
    task_type, task_id = task_of(strategy)
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def worker_directory(directory, strategy):
    """Where this process writes what goes to `directory`.

    The chief writes to `directory`; other workers still run every save
    (MultiWorkerMirroredStrategy saves may take part in collectives) but to a
    scratch directory of their own, as TensorFlow's multi-worker guide
    recommends, so two writers never race on the same files.
    """
    if is_chief(strategy):
        return os.fspath(directory)
    task_type, task_id = task_of(strategy)
    name = os.path.basename(os.path.normpath(os.fspath(directory)))
    return os.path.join(tempfile.gettempdir(),
                        f"keras_ssl_{task_type}{task_id}_{os.getpid()}_{name}")

"""Builds a tf.distribute strategy from a flag value."""

import json
import os

import tensorflow as tf

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
            devices when `cpu_replicas` > 0), "multi_worker" (reads TF_CONFIG),
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
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy=multi_worker needs the TF_CONFIG "
                             "environment variable (cluster and task).")
        json.loads(os.environ["TF_CONFIG"])  # fail early on malformed JSON
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)

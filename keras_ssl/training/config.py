"""What a pre-training run is asked to do, and the file that records it beside its checkpoints."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, Optional, Tuple

import tensorflow as tf

from keras_ssl.data.storage import write_bytes

# Written into every run's model_dir; `restore_encoder`, evaluate and export
# rebuild the encoder from it without knowing how the run was started.
RUN_CONFIG_FILE = "config.json"


@dataclasses.dataclass
class PretrainConfig:
    """The arguments of one `keras_ssl.training.pretrain` run.

    Field names are the flags of `keras-ssl-train` (and of
    `experiments/train.py`), with the units in their names; a preset's
    flags (`keras_ssl.configs.get(preset, method)["flags"]`) are valid
    fields as they are.

    Args:
        method: a registry name (`keras_ssl.methods.available()`).
        data: an image folder, `tfds:NAME` or `npz:PATH`.
        backbone: `resnet18|resnet34|resnet50|tiny|keras:<Name>`.
        width_multiplier: backbone channel multiplier.
        zero_init_residual: ResNets start every residual branch at zero.
        synchronized_bn: every BatchNorm of the backbone takes its statistics
            over the global batch when the run has several replicas (the
            presets set it where the official code syncs BN in the whole
            network); with one replica it changes nothing.
        split_batch_norm: S > 0: every BatchNorm of the backbone normalises
            S sub-batches of the global batch separately in training
            (`keras_ssl.backbones.SplitBatchNormalization`, the single-GPU
            stand-in for shuffled BatchNorm of ASCL's and MoCo's CIFAR code);
            S must divide among the replicas and the batch among S. Excludes
            synchronized_bn; 0: off. Evaluation and export rebuild the
            encoder with plain BatchNorm (the same weights).
        image_size: side of the square training views, in pixels.
        train_per_class: first N training images of each class (0: all).
        imbalance_ratio: long-tail subset with this head/tail ratio (0: balanced).
        epochs: training epochs.
        global_batch_size: batch size summed over every replica of every worker.
        optimizer: `sgd`, `lars` or `adamw`.
        learning_rate: peak learning rate, after warm-up.
        weight_decay: weight decay coefficient.
        warmup_epochs: linear warm-up before the cosine decay.
        lr_schedule: `warmup_cosine` (linear warm-up, then cosine to 0) or
            `fixmatch_cosine` (FixMatch's cos(7 pi k / 16 K), no warm-up).
        nesterov: Nesterov momentum for `sgd` (FixMatch's official optimizer).
        blur: Gaussian blur in the views.
        model_dir: checkpoints, TensorBoard logs and config.json; rerunning
            with the same model_dir resumes. Any `tf.io.gfile` path
            (`gs://...`, `ram://...`).
        checkpoint_every_steps: also keep the newest few step checkpoints,
            one every N global steps, so a run killed mid-epoch resumes at
            its last one (0: epoch checkpoints only). Preemption (SIGTERM)
            writes a step checkpoint either way.
        seed: seed of weights, data order and augmentation.
        strategy: `default`, `mirrored`, `multi_worker` or `tpu`.
        cpu_replicas: split the CPU into N logical devices (0: leave it whole).
        tpu: TPU name or address for `strategy="tpu"`.
        tfds_data_dir: where tensorflow-datasets keeps prepared sets for
            `data="tfds:NAME"` (None: its default; may be `gs://...`).
        knn_every_epochs: kNN monitor period in epochs (0: only at the end).
        knn_k: neighbours of the kNN monitor.
        knn_temperature: vote temperature of the kNN monitor.
        mixed_precision: mixed_float16 on GPUs (with loss scaling),
            mixed_bfloat16 on TPUs and CPUs.
        jit_compile: XLA-compile the whole step (single device only).
        profile_steps: (first, last) 1-based steps of this process's training
            to record with TensorFlow's profiler into `model_dir/logs/train`
            (TensorBoard's Profile tab; `experiments/step_profile.py` sums the
            record by op type); () records nothing.
        fused_batch_norm: the ResNet's BatchNorm through TensorFlow's fused
            kernel (one op each way instead of Keras' ten or so); the same
            maths, other rounding, so off by default. 1.3-2x faster BYOL steps
            on the CPU (README, versus lightly).
        export_dir: export the encoder here at the end (None: no export).
        verbose: Keras `fit` verbosity.
        deterministic: deterministic TF ops, so a resumed run ends with the
            weights of an uninterrupted one.
        inject_nan_at_step: test aid: make the loss of this 1-based global
            step NaN (0: off).
        sigterm_at_step: test aid: send this process SIGTERM while this
            1-based global step runs, as a preemption would (0: off).
        init_encoder: a trained run's model_dir (or a checkpoint prefix in
            it) whose encoder weights and BatchNorm statistics start this
            run, e.g. FixMatch from a SimCLR encoder; the backbone flags must
            build the same network. Ignored when `model_dir` has a checkpoint
            to resume from (that checkpoint holds the encoder already).
        labels_per_class, label_fraction, label_indices: a label budget
            (at most one): N labels per class, a class-balanced fraction F of
            the training split, or a file of dataset indices, one per line.
            With one, every step also carries a labeled batch drawn by a
            class-balanced sampler (`Batch.labeled`), for methods that learn
            from a few labels.
        labeled_batch_size: global batch size of that labeled stream (0: the
            unlabeled global batch size).
        hide_labels: give the unlabeled stream's rows label -1, so only the
            labeled stream carries classes.
        probe: train an online linear probe on the detached features beside
            the method (solo-learn's habit); it logs `probe_top1` and the
            result reports its last epoch's value.
        background: background augmentation ops, any of "rm", "random",
            "swaps" (`keras_ssl.augment.background_views`), with the method
            preset's probabilities (`keras_ssl.configs.background`); empty: off.
        background_probabilities: `BackgroundConfig` fields that override
            the preset's, e.g. ``{"remove": 0.3}``.
        saliency: where the foreground masks come from: "spectral" (training
            free) or "encoder:MODEL_DIR" (a trained keras_ssl encoder); they
            are cached in ``model_dir/masks``.
        shifted_knn: also report `knn_top1_background_shifted`, the kNN
            top-1 on the test split with every image's background swapped
            (masks of the test split by `saliency`).
        method_kwargs: constructor keyword arguments of the method
            (a preset's "method" entry).
        view_kwargs: keyword arguments of the method's view recipe
            (a preset's "views" entry).

    Example:
    >>> config = PretrainConfig(method="simclr", data="npz:cifar10.npz",
    ...                         backbone="tiny", epochs=2, model_dir="/tmp/simclr")
    >>> dataclasses.replace(config, epochs=4).epochs
    4
    """

    method: str
    data: str
    backbone: str = "resnet18"
    width_multiplier: float = 1.0
    zero_init_residual: bool = False
    synchronized_bn: bool = False
    split_batch_norm: int = 0
    image_size: int = 32
    train_per_class: int = 0
    imbalance_ratio: float = 0.0
    epochs: int = 10
    global_batch_size: int = 256
    optimizer: str = "sgd"
    learning_rate: float = 0.12
    weight_decay: float = 5e-4
    warmup_epochs: int = 0
    lr_schedule: str = "warmup_cosine"
    nesterov: bool = False
    blur: bool = True
    model_dir: str = "runs"
    checkpoint_every_steps: int = 0
    seed: int = 0
    strategy: str = "default"
    cpu_replicas: int = 0
    tpu: str = ""
    tfds_data_dir: Optional[str] = None
    knn_every_epochs: int = 0
    knn_k: int = 200
    knn_temperature: float = 0.1
    mixed_precision: bool = False
    jit_compile: bool = False
    profile_steps: Tuple[int, ...] = ()
    fused_batch_norm: bool = False
    export_dir: Optional[str] = None
    verbose: int = 1
    deterministic: bool = False
    inject_nan_at_step: int = 0
    sigterm_at_step: int = 0
    init_encoder: Optional[str] = None
    labels_per_class: int = 0
    label_fraction: float = 0.0
    label_indices: Optional[str] = None
    labeled_batch_size: int = 0
    hide_labels: bool = False
    probe: bool = False
    background: Tuple[str, ...] = ()
    background_probabilities: Optional[Mapping[str, Any]] = None
    saliency: str = "spectral"
    shifted_knn: bool = False
    method_kwargs: Optional[Mapping[str, Any]] = None
    view_kwargs: Optional[Mapping[str, Any]] = None

    @classmethod
    def from_dict(cls, values):
        """The config of a dict such as a run's config.json; unknown keys are an error."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"Unknown pretrain arguments {unknown}; valid are {sorted(names)}.")
        return cls(**values)

    def to_dict(self):
        """The fields as a flat dict (values are not copied: method kwargs may hold layers)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


def write_run_config(model_dir, config):
    """Writes `config` (a `PretrainConfig`) as model_dir/config.json (any tf.io.gfile path).

    Written beside and renamed over the old file: a kill mid-write leaves the
    previous config whole, and on `ram://`, where opening an existing file
    for writing appends to it, the file is replaced rather than extended.
    """
    # Objects in method_kwargs (e.g. objectives) are recorded by their repr.
    text = json.dumps(config.to_dict(), indent=1, sort_keys=True, default=repr)
    write_bytes(os.path.join(model_dir, RUN_CONFIG_FILE), text.encode("utf-8"), atomic=True)


def load_run_config(model_dir):
    """The arguments of the `pretrain` call that wrote `model_dir`, as a dict."""
    config_path = os.path.join(model_dir, RUN_CONFIG_FILE)
    if not tf.io.gfile.exists(config_path):
        raise FileNotFoundError(
            f"--checkpoint: {config_path} is missing, so the encoder cannot be rebuilt; "
            "it is written by train.py (runs trained before it existed need a new run).")
    with tf.io.gfile.GFile(config_path) as file:
        return json.load(file)

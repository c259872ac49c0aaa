"""keras-ssl-train: trains a self-supervised method and prints its results as one JSON line.

    keras-ssl-train --method=simclr --preset=cifar10_cpu_small \
        --data=../shared/data/cifar10 --model_dir=/tmp/simclr

Rerunning the same command resumes from the last checkpoint in --model_dir
(an epoch one, or a step one with --checkpoint_every_steps), also after a
kill (SIGKILL included) or a damaged newest checkpoint; with --deterministic
the resumed run ends with the same weights as an uninterrupted one.
--model_dir may be a URL of any TensorFlow file system (gs://, ram://).
SIGTERM (a preemption) lets the step in flight finish, checkpoints it and
ends the run with one line "preempted at step S (epoch E): checkpoint written
to PATH; rerun the same command to resume" and exit status 75 (EX_TEMPFAIL:
retry); rerunning loses no finished step. Outside the steps (loading data,
the final kNN evaluation, export), where every finished step is already
saved, SIGTERM stops the run at once with one line saying so and status 75.
A NaN/Inf loss stops the run with exit status 1 and one error line naming
the step; the checkpoints end at the last good epoch (or step).
Bad flags or paths end with one error line and exit status 2 (1 for a value
absl's flag types refuse, e.g. an unknown --method), within a second or two:
they are checked before TensorFlow is imported.
Flags given on the command line override the preset.

Continual methods (NNCSL: the method class has `start_task`) train task by
task with `keras_ssl.training.continual_pretrain`, and print its results:

    keras-ssl-train --method=nncsl --preset=cifar10_cpu_small \
        --data=../shared/data/cifar10 --model_dir=/tmp/nncsl

--tasks, --buffer_size and --supports_per_class default to the preset's
`keras_ssl.configs.<method>.continual(scale)`, --class_order_seed to the
natural class order; --epochs is per task. Such a run checkpoints after
every task, and rerunning the command resumes at the first unfinished one;
SIGTERM stops it at once (status 75) and the rerun redoes the task it was in.
"""

import os
import sys

import keras_ssl  # noqa: F401  (sets TensorFlow's environment first)
from absl import app, flags, logging

from keras_ssl.cli.common import (ExitError, check_data_spec, define_tfds_data_dir_flag,
                                  json_main, path_kind, program_name)

FLAGS = flags.FLAGS

# Flags copied into PretrainConfig under their own names.
_CONFIG_FLAGS = (
    "method", "data", "backbone", "width_multiplier", "zero_init_residual",
    "synchronized_bn", "split_batch_norm", "image_size",
    "train_per_class", "imbalance_ratio", "epochs", "global_batch_size", "optimizer",
    "learning_rate", "weight_decay", "warmup_epochs", "lr_schedule", "nesterov", "blur",
    "model_dir",
    "checkpoint_every_steps", "seed",
    "strategy", "cpu_replicas", "tpu", "tfds_data_dir", "knn_every_epochs", "knn_k", "knn_temperature",
    "mixed_precision", "jit_compile", "fused_batch_norm", "export_dir", "verbose", "deterministic",
    "init_encoder", "labels_per_class", "label_fraction", "label_indices", "labeled_batch_size",
    "hide_labels", "probe", "saliency", "shifted_knn")

# The flags of continual runs (keyword arguments of continual_pretrain beside
# the config), each with the value that means "not given": then the preset's
# `continual(scale)` value fills it (or continual_pretrain's default).
_CONTINUAL_FLAGS = {"tasks": 0, "buffer_size": -1, "supports_per_class": 0}

# keras_ssl.augment.background_views.OPS and the BackgroundConfig fields
# --background_probabilities may set (plain data: flags are checked before
# TensorFlow is imported).
_BACKGROUND_OPS = ("rm", "random", "swaps")
_BACKGROUND_PROBABILITIES = ("remove", "random", "swap_positive", "swap_negative")

# The choices of --optimizer, --lr_schedule and --strategy. They are
# keras_ssl.training.build's OPTIMIZERS and LR_SCHEDULES and
# keras_ssl.distribute.STRATEGIES, but those modules import TensorFlow and the
# flags are checked before that import; so these are copies, which
# tests/cli/test_console_scripts.py checks equal the originals.
OPTIMIZERS = ("sgd", "lars", "adamw")
LR_SCHEDULES = ("warmup_cosine", "fixmatch_cosine")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def define_flags():
    """Defines the program's flags (once per process)."""
    if "method" in FLAGS:
        return
    # The methods with a config module, which tests/configs checks are the
    # registered ones (keras_ssl.methods.available()): keras_ssl.configs is
    # plain data, the registry imports TensorFlow.
    from keras_ssl import configs

    flags.DEFINE_enum("method", None, configs.methods(), "Method to train.")
    flags.DEFINE_string("data", None, "Image folder path, tfds:NAME or npz:PATH.")
    flags.DEFINE_string("preset", None, "Preset of keras_ssl.configs, e.g. cifar10_cpu_small.")
    flags.DEFINE_boolean("smoke", False,
                         "With --preset: its test-size recipe (tiny backbone and heads, a "
                         "few images), to check a set-up end to end in seconds.")
    flags.DEFINE_string("backbone", "resnet18", "resnet18|resnet34|resnet50|tiny|keras:<Name>.")
    flags.DEFINE_float("width_multiplier", 1.0, "Backbone channel multiplier.")
    flags.DEFINE_boolean("synchronized_bn", False,
                         "Backbone BatchNorm over the global batch when there are several "
                         "replicas (SwAV, MIRA, BYOL, SimCLR presets).")
    flags.DEFINE_integer("split_batch_norm", 0,
                         "Backbone BatchNorm in training over this many sub-batches of the "
                         "global batch (the single-GPU stand-in for shuffled BN of the ASCL "
                         "and MoCo CIFAR code; the ascl presets); 0: off. Excludes "
                         "--synchronized_bn.", lower_bound=0)
    flags.DEFINE_boolean("zero_init_residual", False,
                         "ResNets: start every residual branch at zero (last BN scale 0).")
    flags.DEFINE_integer("image_size", 32, "Side of the (square) training views.", lower_bound=1)
    flags.DEFINE_integer("train_per_class", 0, "First N training images of each class (0: all).",
                         lower_bound=0)
    flags.DEFINE_float("imbalance_ratio", 0.0, "Long-tail subset with this ratio (0: balanced).")
    flags.DEFINE_integer("epochs", 10, "Training epochs.", lower_bound=0)
    flags.DEFINE_integer("global_batch_size", 256, "Batch size summed over all replicas.",
                         lower_bound=1)
    flags.DEFINE_enum("optimizer", "sgd", OPTIMIZERS, "Optimizer.")
    flags.DEFINE_float("learning_rate", 0.12, "Peak learning rate (after warm-up).")
    flags.DEFINE_float("weight_decay", 5e-4, "Weight decay.")
    flags.DEFINE_integer("warmup_epochs", 0, "Linear warm-up epochs before the cosine decay.",
                         lower_bound=0)
    flags.DEFINE_enum("lr_schedule", "warmup_cosine", LR_SCHEDULES,
                      "warmup_cosine: linear warm-up, then cosine to 0; fixmatch_cosine: "
                      "FixMatch's cos(7 pi k / 16 K), no warm-up.")
    flags.DEFINE_boolean("nesterov", False, "Nesterov momentum (--optimizer=sgd only).")
    flags.DEFINE_boolean("blur", True, "Gaussian blur in the views (off in the CPU protocol).")
    flags.DEFINE_string("model_dir", None,
                        "Checkpoints, TensorBoard logs (default: runs/<method>).")
    flags.DEFINE_integer("checkpoint_every_steps", 0,
                         "Also keep the newest few step checkpoints, one every N global "
                         "steps, so a killed run resumes mid-epoch (0: per epoch only; "
                         "SIGTERM checkpoints the current step either way).", lower_bound=0)
    flags.DEFINE_integer("seed", 0, "Seed of weights, data order and augmentation.")
    flags.DEFINE_enum("strategy", "default", STRATEGIES, "tf.distribute strategy.")
    flags.DEFINE_integer("cpu_replicas", 0,
                         "Split the CPU into N logical devices (mirrored tests).", lower_bound=0)
    flags.DEFINE_string("tpu", "", "TPU name or address for --strategy=tpu.")
    define_tfds_data_dir_flag()
    flags.DEFINE_integer("knn_every_epochs", 0,
                         "kNN monitor period in epochs (0: only at the end).", lower_bound=0)
    flags.DEFINE_integer("knn_k", 200, "Neighbours of the kNN monitor.", lower_bound=1)
    flags.DEFINE_float("knn_temperature", 0.1, "Vote temperature of the kNN monitor.")
    flags.DEFINE_boolean("mixed_precision", False, "mixed_float16 (GPU) / mixed_bfloat16 (TPU, CPU).")
    flags.DEFINE_boolean("jit_compile", False, "XLA-compile the whole step (single device only).")
    flags.DEFINE_list("profile_steps", [],
                      "FIRST,LAST: record these 1-based steps of this process's training with "
                      "TensorFlow's profiler into --model_dir/logs/train (TensorBoard's Profile "
                      "tab).")
    flags.DEFINE_boolean("fused_batch_norm", False,
                         "ResNet BatchNorm through the fused kernel (faster on CPU; other rounding).")
    flags.DEFINE_string("export_dir", None,
                        "Export the encoder here at the end (SavedModel + .keras).")
    flags.DEFINE_boolean("deterministic", False,
                         "Deterministic TF ops and seeds: a resumed run ends with the same "
                         "weights as an uninterrupted one (slower on GPUs).")
    flags.DEFINE_integer("debug_inject_nan_at_step", 0,
                         "Testing aid: make the loss of this 1-based global step NaN (0: off).",
                         lower_bound=0)
    flags.DEFINE_integer("debug_sigterm_at_step", 0,
                         "Testing aid: send this process SIGTERM during this 1-based global "
                         "step, as a preemption would (0: off).", lower_bound=0)
    flags.DEFINE_integer("verbose", 1,
                         "Keras fit verbosity: 0 silent, 1 progress bar, 2 a line per epoch.")
    flags.DEFINE_string("init_encoder", None,
                        "A trained run's --model_dir (or checkpoint prefix) whose encoder "
                        "weights start this run, e.g. FixMatch from a SimCLR encoder.")
    flags.DEFINE_integer("labels_per_class", 0,
                         "Label budget: N labeled images per class drawn beside every "
                         "batch by a class-balanced sampler (0: no labeled stream).",
                         lower_bound=0)
    flags.DEFINE_float("label_fraction", 0.0,
                       "Label budget: a class-balanced fraction of the training split.",
                       lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_string("label_indices", None,
                        "Label budget: a file of dataset indices, one per line.")
    flags.DEFINE_integer("labeled_batch_size", 0,
                         "Global batch size of the labeled stream (0: --global_batch_size).",
                         lower_bound=0)
    flags.DEFINE_boolean("hide_labels", False,
                         "Give the unlabeled stream's rows label -1 (semi-supervised runs).")
    flags.DEFINE_boolean("probe", False,
                         "Train an online linear probe on detached features; logs probe_top1.")
    flags.DEFINE_list("background", [],
                      "Background augmentation ops, a comma list of rm (background removed), "
                      "random (another image's background), swaps (for methods with "
                      "negatives: the positive on another background, an extra negative on "
                      "the anchor's); probabilities from the method's preset.")
    flags.DEFINE_list("background_probabilities", [],
                      "Override the preset's background probabilities: remove=P,random=P,"
                      "swap_positive=P,swap_negative=P.")
    flags.DEFINE_string("saliency", "spectral",
                        "Foreground masks for --background and --shifted_knn: spectral "
                        "(training free) or encoder:MODEL_DIR (a trained keras_ssl run).")
    flags.DEFINE_boolean("shifted_knn", False,
                         "Also report the kNN top-1 on the test split with every image's "
                         "background swapped (knn_top1_background_shifted).")
    flags.DEFINE_integer("tasks", 0,
                         "Continual methods (nncsl): class-incremental tasks T, which must "
                         "divide the classes (0: the preset's).", lower_bound=0)
    flags.DEFINE_integer("buffer_size", -1,
                         "Continual methods: labelled images kept in the replay buffer "
                         "(0: none; -1: the preset's).", lower_bound=-1)
    flags.DEFINE_integer("supports_per_class", 0,
                         "Continual methods: labelled images of every seen class in each "
                         "step (0: the preset's).", lower_bound=0)
    flags.DEFINE_integer("class_order_seed", -1,
                         "Continual methods: shuffle the classes into tasks with this seed "
                         "(-1: the natural class order, the official split).", lower_bound=-1)
    flags.mark_flags_as_required(["method", "data"])


def apply_preset():
    """Fills flags the command line did not set from --preset.

    Returns the preset's (method keyword arguments, view keyword arguments).
    """
    if not FLAGS.preset:
        return {}, {}
    from keras_ssl import configs

    entry = configs.get(FLAGS.preset, FLAGS.method, smoke=FLAGS.smoke)
    for name, value in entry["flags"].items():
        if not FLAGS[name].present:
            FLAGS[name].value = value
    return entry["method"], entry["views"]


def check_flags():
    """Applies --preset and checks the paths, all before TensorFlow is imported.

    Returns the preset's (method keyword arguments, view keyword arguments).
    """
    presets = apply_preset()  # keras_ssl.configs is plain data
    if _has_continual_recipe(FLAGS.method):
        continual_arguments()  # e.g. no --tasks and no preset: say so before the import
    check_data_spec(FLAGS.data)
    # The test keras_ssl.data.read_label_indices makes first.
    if FLAGS.label_indices and path_kind(FLAGS.label_indices) != "file":
        raise ValueError(f"--label_indices={FLAGS.label_indices}: no such file.")
    if FLAGS.init_encoder and path_kind(FLAGS.init_encoder) != "folder" and path_kind(
            FLAGS.init_encoder + ".index") != "file":
        raise ValueError(f"--init_encoder={FLAGS.init_encoder}: no such run folder or "
                         "checkpoint prefix.")
    unknown = sorted(set(FLAGS.background) - set(_BACKGROUND_OPS))
    if unknown:
        raise ValueError(f"--background={','.join(FLAGS.background)}: {', '.join(unknown)} is "
                         f"not one of {', '.join(_BACKGROUND_OPS)}.")
    background_probabilities()  # a ValueError naming a malformed entry
    if FLAGS.saliency != "spectral" and not FLAGS.saliency.startswith("encoder:"):
        raise ValueError(f"--saliency={FLAGS.saliency!r} is not spectral or encoder:MODEL_DIR.")
    profile_steps()  # a ValueError naming the flag
    return presets


def profile_steps():
    """--profile_steps as a (first, last) pair of 1-based steps, or () when not given."""
    if not FLAGS.profile_steps:
        return ()
    try:
        first, last = (int(step) for step in FLAGS.profile_steps)
    except ValueError:
        first = last = 0
    if not 1 <= first <= last:
        raise ValueError(f"--profile_steps={','.join(FLAGS.profile_steps)} is not FIRST,LAST "
                         "with 1 <= FIRST <= LAST.")
    return first, last


def _has_continual_recipe(method):
    """True when `method`'s config module has `continual(scale)` (a continual method's recipe).

    Plain data, so checkable before TensorFlow is imported; `train` decides by
    the method class itself (`keras_ssl.training.continual.is_continual`).
    """
    from keras_ssl import configs

    return hasattr(configs.module(method), "continual")


def continual_arguments():
    """`continual_pretrain`'s keyword arguments beside the config: the flags, then the preset.

    Flags left at their "not given" value (`_CONTINUAL_FLAGS`) take the
    preset's `continual(scale, smoke=--smoke)` values, which also bring the
    schedule's fractions; without a preset, continual_pretrain's defaults,
    except --tasks, which has none.

    Raises:
        ValueError: no --tasks and no preset value for it.
    """
    from keras_ssl import configs

    arguments = {}
    if FLAGS.preset:
        module = configs.module(FLAGS.method)
        if hasattr(module, "continual"):
            arguments = module.continual(configs.scale_of(FLAGS.preset), smoke=FLAGS.smoke)
    for name, unset in _CONTINUAL_FLAGS.items():
        if FLAGS[name].value != unset:
            arguments[name] = FLAGS[name].value
    if "tasks" not in arguments:
        where = (f"--preset={FLAGS.preset} has no continual recipe for --method={FLAGS.method}"
                 if FLAGS.preset else "there is no --preset")
        raise ValueError(f"--tasks: --method={FLAGS.method} trains class-incremental tasks "
                         f"and {where} to take their number from; give --tasks=T.")
    arguments["class_order_seed"] = (None if FLAGS.class_order_seed == -1
                                     else FLAGS.class_order_seed)
    return arguments


def _refuse_continual_flags():
    """A ValueError naming the continual flags given for a method that is not continual."""
    unset = dict(_CONTINUAL_FLAGS, class_order_seed=-1)
    given = [f"--{name}={FLAGS[name].value}" for name in unset
             if FLAGS[name].value != unset[name]]
    if given:
        raise ValueError(f"{', '.join(given)}: only continual methods (e.g. nncsl) train in "
                         f"tasks; --method={FLAGS.method} does not.")


def background_probabilities():
    """--background_probabilities as a dict of floats, e.g. {"remove": 0.3}."""
    values = {}
    for entry in FLAGS.background_probabilities:
        name, _, value = entry.partition("=")
        if name not in _BACKGROUND_PROBABILITIES:
            raise ValueError(f"--background_probabilities: {entry!r} does not start with one of "
                             f"{', '.join(n + '=' for n in _BACKGROUND_PROBABILITIES)}.")
        try:
            values[name] = float(value)
        except ValueError:
            raise ValueError(f"--background_probabilities: {entry!r} needs a number after "
                             "'='.") from None
    return values


def config_from_flags():
    """The `PretrainConfig` the command line (and its preset) asks for."""
    method_kwargs, view_kwargs = check_flags()
    from keras_ssl.training import PretrainConfig

    values = {name: FLAGS[name].value for name in _CONFIG_FLAGS}
    values["model_dir"] = values["model_dir"] or os.path.join("runs", FLAGS.method)
    return PretrainConfig(**values, inject_nan_at_step=FLAGS.debug_inject_nan_at_step,
                          sigterm_at_step=FLAGS.debug_sigterm_at_step,
                          profile_steps=profile_steps(),
                          background=tuple(FLAGS.background),
                          background_probabilities=background_probabilities() or None,
                          method_kwargs=method_kwargs, view_kwargs=view_kwargs)


def train():
    """Runs the configured training; its result dict (None on non-chief workers)."""
    config = config_from_flags()
    from keras_ssl.distribute.worker_health import WorkerLostError
    from keras_ssl.fault_tolerance import NonFiniteLossError
    from keras_ssl.preemption import (PREEMPTED_EXIT_STATUS, Preempted, Terminated,
                                      sigterm_stops_the_run)
    from keras_ssl.training import continual_pretrain, pretrain
    from keras_ssl.training.continual import is_continual

    continual = is_continual(config.method)
    if not continual:
        _refuse_continual_flags()
    try:
        with sigterm_stops_the_run():
            if continual:
                # Task by task, its own checkpoints; a rerun resumes at the next task.
                return continual_pretrain(config, **continual_arguments())
            return pretrain(config)
    except Terminated as error:
        # Outside fit's steps (set-up, evaluation, export) or inside a
        # continual task, which has no step checkpoints: say what a rerun keeps.
        kept = ("every finished task" if continual else "every finished step")
        print(f"{program_name()}: {error}; the checkpoints in {config.model_dir} hold {kept}; "
              "rerun the same command to go on.", file=sys.stderr)
        sys.exit(PREEMPTED_EXIT_STATUS)
    except (NonFiniteLossError, WorkerLostError) as error:
        # Not the flags' fault: exit status 1, the checkpoints end at the last good
        # epoch (NaN), or a rerun of every worker resumes (a lost worker).
        raise ExitError(str(error), status=1) from error
    except Preempted as error:
        # Not an error: one line saying where the run stopped, and a status
        # that asks a scheduler to run the command again.
        print(f"{program_name()}: {error}", file=sys.stderr)
        sys.exit(PREEMPTED_EXIT_STATUS)


def main():
    """Console entry point of keras-ssl-train."""
    define_flags()
    logging.set_verbosity(logging.WARNING)
    app.run(json_main(train))


if __name__ == "__main__":
    main()

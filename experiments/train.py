"""Trains a self-supervised method and prints its kNN accuracy as one JSON line.

    python experiments/train.py --method=simclr --preset=cifar10_cpu_small \
        --data=../shared/data/cifar10 --model_dir=/tmp/simclr

Rerunning the same command resumes from the last epoch checkpoint in
--model_dir, also after a kill (SIGKILL included) or a damaged newest
checkpoint; with --deterministic the resumed run ends with the same weights
as an uninterrupted one. A NaN/Inf loss stops the run with exit status 1 and
one error line naming the step; the checkpoints end at the last good epoch.
Flags given on the command line override the preset.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras_ssl  # noqa: E402,F401  (sets TensorFlow's environment first)
from absl import app, flags, logging  # noqa: E402

from keras_ssl import distribute  # noqa: E402
from keras_ssl.fault_tolerance import NonFiniteLossError  # noqa: E402
from keras_ssl.methods import registry  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("method", None, registry.available(), "Method to train.")
flags.DEFINE_string("data", None, "Image folder path, tfds:NAME or npz:PATH.")
flags.DEFINE_string("preset", None, "Preset of experiments/presets.py, e.g. cifar10_cpu_small.")
flags.DEFINE_string("backbone", "resnet18", "resnet18|resnet34|resnet50|tiny|keras:<Name>.")
flags.DEFINE_float("width_multiplier", 1.0, "Backbone channel multiplier.")
flags.DEFINE_boolean("zero_init_residual", False,
                     "ResNets: start every residual branch at zero (last BN scale 0).")
flags.DEFINE_integer("image_size", 32, "Side of the (square) training views.")
flags.DEFINE_integer("train_per_class", 0, "First N training images of each class (0: all).")
flags.DEFINE_float("imbalance_ratio", 0.0, "Long-tail subset with this ratio (0: balanced).")
flags.DEFINE_integer("epochs", 10, "Training epochs.")
flags.DEFINE_integer("global_batch_size", 256, "Batch size summed over all replicas.")
flags.DEFINE_enum("optimizer", "sgd", ["sgd", "lars", "adamw"], "Optimizer.")
flags.DEFINE_float("learning_rate", 0.12, "Peak learning rate (after warm-up).")
flags.DEFINE_float("weight_decay", 5e-4, "Weight decay.")
flags.DEFINE_integer("warmup_epochs", 0, "Linear warm-up epochs before the cosine decay.")
flags.DEFINE_boolean("blur", True, "Gaussian blur in the views (off in the CPU protocol).")
flags.DEFINE_string("model_dir", None, "Checkpoints, TensorBoard logs (default: runs/<method>).")
flags.DEFINE_integer("seed", 0, "Seed of weights, data order and augmentation.")
flags.DEFINE_enum("strategy", "default", list(distribute.STRATEGIES), "tf.distribute strategy.")
flags.DEFINE_integer("cpu_replicas", 0, "Split the CPU into N logical devices (mirrored tests).")
flags.DEFINE_string("tpu", "", "TPU name or address for --strategy=tpu.")
flags.DEFINE_integer("knn_every_epochs", 0, "kNN monitor period in epochs (0: only at the end).")
flags.DEFINE_integer("knn_k", 200, "Neighbours of the kNN monitor.")
flags.DEFINE_float("knn_temperature", 0.1, "Vote temperature of the kNN monitor.")
flags.DEFINE_boolean("mixed_precision", False, "mixed_float16 (GPU) / mixed_bfloat16 (TPU).")
flags.DEFINE_boolean("jit_compile", False, "XLA-compile the whole step (single device only).")
flags.DEFINE_string("export_dir", None, "Export the encoder here at the end (SavedModel + .keras).")
flags.DEFINE_boolean("deterministic", False,
                     "Deterministic TF ops and seeds: a resumed run ends with the same "
                     "weights as an uninterrupted one (slower on GPUs).")
flags.DEFINE_integer("debug_inject_nan_at_step", 0,
                     "Testing aid: make the loss of this 1-based global step NaN (0: off).")
flags.DEFINE_integer("verbose", 1, "Keras fit verbosity: 0 silent, 1 progress bar, 2 a line per epoch.")


def apply_preset():
    """Fills flags the command line did not set from --preset; returns its kwargs."""
    if not FLAGS.preset:
        return {}, {}
    from experiments import presets
    entry = presets.get(FLAGS.preset, FLAGS.method)
    for name, value in entry["flags"].items():
        if not FLAGS[name].present:
            FLAGS[name].value = value
    return entry["method"], entry["views"]


def run():
    from experiments.pretrain import pretrain
    method_kwargs, view_kwargs = apply_preset()
    config = {name: FLAGS[name].value for name in (
        "method", "data", "backbone", "width_multiplier", "zero_init_residual", "image_size",
        "train_per_class", "imbalance_ratio", "epochs", "global_batch_size",
        "optimizer", "learning_rate", "weight_decay", "warmup_epochs", "blur",
        "model_dir", "seed", "strategy", "cpu_replicas", "tpu", "knn_every_epochs",
        "knn_k", "knn_temperature", "mixed_precision", "jit_compile", "export_dir",
        "verbose", "deterministic")}
    config["inject_nan_at_step"] = FLAGS.debug_inject_nan_at_step
    config["model_dir"] = config["model_dir"] or os.path.join("runs", FLAGS.method)
    return pretrain(**config, method_kwargs=method_kwargs, view_kwargs=view_kwargs)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        result = run()
    except (ValueError, FileNotFoundError, NotADirectoryError) as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    except NonFiniteLossError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        sys.exit(1)
    if result is not None:  # None on non-chief workers: only the chief reports
        print(json.dumps(result))


if __name__ == "__main__":
    flags.mark_flags_as_required(["method", "data"])
    logging.set_verbosity(logging.WARNING)
    app.run(main)

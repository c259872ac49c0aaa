"""keras-ssl-evaluate: evaluates a trained encoder the standard ways; prints one JSON line.

    keras-ssl-evaluate --checkpoint=/tmp/simclr \
        --data=../shared/data/cifar10 --protocol=all --plot=/tmp/simclr/plots

--checkpoint takes a training run's --model_dir (or a checkpoint prefix in
it) and rebuilds the encoder from the run's config.json; --saved_model takes
a keras-ssl-export SavedModel and encodes through its uint8 `serve` signature.
Paths (--data, --saved_model, --plot) may be URLs of a TensorFlow file system
(`gs://bucket/...`).
Protocols: weighted kNN, linear probe on frozen features, semi-supervised
fine-tuning on class-balanced label fractions, and k-means clustering.
Bad flags or paths end with one error line and exit status 2.
"""

import os
import sys

import keras_ssl  # noqa: F401  (sets TensorFlow's environment first)
from absl import app, flags, logging

from keras_ssl.cli.common import (check_checkpoint_path, check_data_spec,
                                  define_tfds_data_dir_flag, json_main, path_kind,
                                  program_name)

PROTOCOLS = ("knn", "linear", "semi", "cluster")
LINEAR_METHODS = ("sgd", "lbfgs")

FLAGS = flags.FLAGS


def define_flags():
    """Defines the program's flags (once per process)."""
    if "checkpoint" in FLAGS:
        return
    flags.DEFINE_string("checkpoint", None,
                        "A training run's --model_dir, or a checkpoint prefix in it.")
    flags.DEFINE_string("saved_model", None, "SavedModel folder written by keras-ssl-export.")
    flags.DEFINE_string("data", None,
                        "Image folder path, tfds:NAME or npz:PATH (labelled).")
    define_tfds_data_dir_flag()
    flags.DEFINE_integer("image_size", 0,
                         "Side images are resized to (0: the run's training size).")
    flags.DEFINE_integer("train_per_class", 0,
                         "First N training images of each class (0: all).")
    flags.DEFINE_integer("test_per_class", 0, "First N test images of each class (0: all).")
    flags.DEFINE_string("protocol", "knn", f"Comma list of {', '.join(PROTOCOLS)}, or all.")
    flags.DEFINE_integer("knn_k", 200, "Neighbours of the kNN classifier.")
    flags.DEFINE_float("knn_temperature", 0.1, "Vote temperature of the kNN classifier.")
    flags.DEFINE_string("linear_method", "sgd", "Linear probe solver: sgd or lbfgs.")
    flags.DEFINE_integer("linear_epochs", 100, "Epochs of the SGD linear probe.")
    flags.DEFINE_float("linear_weight_decay", 1e-4, "L2 coefficient of the linear probe.")
    flags.DEFINE_list("label_fractions", ["0.01", "0.1"],
                      "Label fractions of the semi protocol.")
    flags.DEFINE_integer("finetune_epochs", 30, "Fine-tuning epochs of the semi protocol.")
    flags.DEFINE_integer("finetune_batch_size", 64, "Fine-tuning batch size.")
    flags.DEFINE_float("finetune_learning_rate", 0.01, "Peak fine-tuning learning rate.")
    flags.DEFINE_string("plot", None,
                        "Write embedding (t-SNE) and training-curve PNGs here.")
    flags.DEFINE_integer("plot_max_points", 2000, "Test points in the t-SNE plot.")
    flags.DEFINE_integer("batch_size", 512, "Batch size of feature extraction.")
    flags.DEFINE_integer("seed", 0, "Seed of label subsets, probes, k-means and t-SNE.")


class ServedEncoder:
    """A keras-ssl-export SavedModel as an encoder of float images in [0, 1].

    extract_features hands float images; `serve` wants the uint8 pixels they
    came from, which rounding recovers exactly (eval datasets divide by 255).
    """

    def __init__(self, loaded):
        self.loaded = loaded

    def __call__(self, images, training=False):
        import tensorflow as tf
        pixels = tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)
        return self.loaded.serve(pixels)


def parse_protocols(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        return list(PROTOCOLS)
    unknown = [name for name in names if name not in PROTOCOLS]
    if unknown or not names:
        raise ValueError(f"--protocol={text!r}: valid are {', '.join(PROTOCOLS)}, "
                         "a comma list of them, or all.")
    return [name for name in PROTOCOLS if name in names]


def parse_fractions(values):
    try:
        fractions = [float(value) for value in values]
    except ValueError:
        fractions = []
    if not fractions or not all(0.0 < fraction <= 1.0 for fraction in fractions):
        raise ValueError(f"--label_fractions={','.join(values)}: give fractions in (0, 1], "
                         "e.g. 0.01,0.1.")
    return fractions


def fraction_key(fraction):
    """0.01 -> "semi_1pct", 0.1 -> "semi_10pct", 0.005 -> "semi_0p5pct"."""
    return "semi_" + f"{100.0 * fraction:g}".replace(".", "p") + "pct"


def check_flags():
    """Validates flags absl cannot, without TensorFlow; returns the protocols to run."""
    if bool(FLAGS.checkpoint) == bool(FLAGS.saved_model):
        raise ValueError("Give exactly one of --checkpoint=MODEL_DIR_OR_CKPT and "
                         "--saved_model=PATH.")
    if not FLAGS.data:
        raise ValueError("--data is required: an image folder path, tfds:NAME or npz:PATH.")
    if FLAGS.linear_method not in LINEAR_METHODS:
        raise ValueError(f"--linear_method={FLAGS.linear_method!r}: valid are "
                         f"{', '.join(LINEAR_METHODS)}.")
    for name in ("train_per_class", "test_per_class", "image_size"):
        if FLAGS[name].value < 0:
            raise ValueError(f"--{name}={FLAGS[name].value}: must be >= 0.")
    protocols = parse_protocols(FLAGS.protocol)
    if "semi" in protocols:
        parse_fractions(FLAGS.label_fractions)
    if FLAGS.checkpoint:
        check_checkpoint_path(FLAGS.checkpoint)
    elif path_kind(os.path.join(os.path.expanduser(FLAGS.saved_model),
                                "saved_model.pb")) != "file":
        raise FileNotFoundError(f"--saved_model={FLAGS.saved_model}: no saved_model.pb there; "
                                "pass the saved_model folder export.py or train.py "
                                "--export_dir wrote.")
    check_data_spec(FLAGS.data)
    return protocols


def load_encoder():
    """(encoder for extract_features, Keras encoder or None, image size, info dict)."""
    if FLAGS.checkpoint:
        from keras_ssl.training import restore_encoder
        encoder, config, model_dir, prefix = restore_encoder(FLAGS.checkpoint)
        return encoder, encoder, config["image_size"], {
            "checkpoint": prefix, "model_dir": model_dir, "method": config.get("method")}
    import keras
    import tensorflow as tf
    from keras_ssl.data.storage import parent
    path = os.path.expanduser(FLAGS.saved_model)
    served = ServedEncoder(tf.saved_model.load(path))
    keras_path = os.path.join(parent(path), "encoder.keras")
    keras_encoder = (keras.saving.load_model(keras_path) if tf.io.gfile.exists(keras_path)
                     else None)
    image_size = int(keras_encoder.input_shape[1]) if keras_encoder is not None else 0
    return served, keras_encoder, image_size, {
        "saved_model": path, "keras_encoder": keras_path if keras_encoder else None}


def load_data(image_size):
    """(source, train split, test split), subsets applied and decoded when they fit."""
    from keras_ssl.training import load_training_data
    from keras_ssl import data as ssl_data
    source, train, _ = load_training_data(FLAGS.data, image_size=image_size,
                                          train_per_class=FLAGS.train_per_class,
                                          imbalance_ratio=0.0,
                                          tfds_data_dir=FLAGS.tfds_data_dir)
    if not source.num_classes or source.test is None or not train.is_labeled:
        raise ValueError(f"--data={FLAGS.data}: evaluation needs labelled train and test "
                         "splits (an image folder with train/ and test/ class folders, "
                         "tfds:NAME or npz:PATH).")
    test = source.test
    if FLAGS.test_per_class:
        test = ssl_data.per_class_subset(test, FLAGS.test_per_class)
    return source, train, test


def evaluate():
    protocols = check_flags()
    # Flags and paths are checked before TensorFlow is imported (nothing above
    # imports it), so their errors come at once.
    import tensorflow as tf
    # A mismatched checkpoint would otherwise list every unrestored value
    # after the one-line error.
    tf.get_logger().setLevel("ERROR")
    import numpy as np
    from keras_ssl import data as ssl_data
    from keras_ssl import evaluation

    encoder, keras_encoder, image_size, info = load_encoder()
    image_size = FLAGS.image_size or image_size
    if not image_size:
        raise ValueError(f"--saved_model={FLAGS.saved_model}: no encoder.keras beside it to "
                         "read the training size from; pass --image_size.")
    source, train, test = load_data(image_size)

    def dataset(split):
        return ssl_data.eval_dataset(split, batch_size=FLAGS.batch_size, image_size=image_size)

    train_features, train_labels = evaluation.extract_features(
        encoder, dataset(train), normalize=False)
    test_features, test_labels = evaluation.extract_features(
        encoder, dataset(test), normalize=False)

    def unit(features):
        return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)

    num_classes = source.num_classes
    results = {**info, "data": FLAGS.data, "protocols": protocols, "num_classes": num_classes,
               "image_size": image_size, "train_images": len(train),
               "test_images": len(test), "feature_dim": int(train_features.shape[1])}
    if "knn" in protocols:
        knn = evaluation.knn_accuracy(unit(train_features), train_labels, unit(test_features),
                                      test_labels, num_classes=num_classes, k=FLAGS.knn_k,
                                      temperature=FLAGS.knn_temperature)
        results.update(knn_top1=knn["top1"], knn_top5=knn["top5"])
    if "linear" in protocols:
        linear = evaluation.linear_probe(
            train_features, train_labels, test_features, test_labels, num_classes=num_classes,
            epochs=FLAGS.linear_epochs, weight_decay=FLAGS.linear_weight_decay,
            method=FLAGS.linear_method, seed=FLAGS.seed)
        results.update(linear_top1=linear["top1"], linear_top5=linear["top5"])
    if "semi" in protocols:
        results.update(semi_supervised(keras_encoder, train, dataset(test), train_features,
                                       train_labels, test_features, test_labels,
                                       num_classes=num_classes, image_size=image_size))
    if "cluster" in protocols:
        clusters = evaluation.cluster_metrics(unit(test_features), test_labels,
                                              num_clusters=num_classes, seed=FLAGS.seed)
        results.update(nmi=clusters["nmi"], ari=clusters["ari"],
                       cluster_acc=clusters["accuracy"])
    if FLAGS.plot:
        results.update(plots(unit(test_features), test_labels, source.class_names,
                             info.get("model_dir")))
    return results


def semi_supervised(keras_encoder, train, test_dataset, train_features, train_labels,
                    test_features, test_labels, *, num_classes, image_size):
    """Top-1 per label fraction: fine-tuning, or a linear probe on frozen features
    when only a SavedModel (no encoder.keras) is at hand."""
    from keras_ssl import data as ssl_data
    from keras_ssl import evaluation
    results = {"semi_mode": "fine_tune" if keras_encoder is not None else "linear_frozen"}
    if keras_encoder is None:
        print(f"{program_name()}: no encoder.keras beside --saved_model, so the semi protocol "
              "trains a linear probe on frozen features instead of fine-tuning.",
              file=sys.stderr)
    for fraction in parse_fractions(FLAGS.label_fractions):
        # The same class-balanced, seeded subset fine_tune would draw; choosing it
        # here first means only the labelled images are decoded.
        indices = evaluation.balanced_label_subset(train_labels, fraction, seed=FLAGS.seed)
        key = fraction_key(fraction)
        if keras_encoder is not None:
            labelled = train.take(indices)
            if labelled.images is None:
                labelled = ssl_data.decode_split(labelled, image_size)
            result = evaluation.fine_tune(
                keras_encoder, labelled.images, labelled.labels, test_dataset,
                num_classes=num_classes, fraction=1.0, epochs=FLAGS.finetune_epochs,
                batch_size=FLAGS.finetune_batch_size,
                learning_rate=FLAGS.finetune_learning_rate, seed=FLAGS.seed)
            top1 = result["top1"]
        else:
            top1 = evaluation.linear_probe(
                train_features[indices], train_labels[indices], test_features, test_labels,
                num_classes=num_classes, method="lbfgs",
                weight_decay=FLAGS.linear_weight_decay)["top1"]
        results[f"{key}_top1"] = top1
        results[f"{key}_labels"] = int(len(indices))
    return results


def plots(test_features, test_labels, class_names, model_dir):
    """Writes the t-SNE of the test features and, for a run folder, its curves."""
    import tensorflow as tf
    from keras_ssl import evaluation
    tf.io.gfile.makedirs(FLAGS.plot)
    written = {"embedding_plot": os.path.join(FLAGS.plot, "embedding.png")}
    evaluation.plot_embedding(test_features, test_labels, written["embedding_plot"],
                              class_names=class_names or None, method="tsne",
                              max_points=FLAGS.plot_max_points, seed=FLAGS.seed)
    history = {}
    if model_dir and tf.io.gfile.isdir(os.path.join(model_dir, "logs")):
        history = evaluation.read_tensorboard_history(os.path.join(model_dir, "logs"))
    if history:
        written["curves_plot"] = os.path.join(FLAGS.plot, "training_curves.png")
        evaluation.plot_training_curves(history, written["curves_plot"])
    return written


def main():
    """Console entry point of keras-ssl-evaluate."""
    define_flags()
    logging.set_verbosity(logging.WARNING)
    app.run(json_main(evaluate))


if __name__ == "__main__":
    main()

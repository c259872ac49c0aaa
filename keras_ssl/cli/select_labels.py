"""keras-ssl-select-labels: chooses which training images to label, without labels (USL).

    keras-ssl-select-labels --checkpoint=/tmp/simclr --data=../shared/data/cifar10 \
        --budget=40 --output=/tmp/usl_40.txt

It restores the encoder of a training run (--checkpoint: its --model_dir or a
checkpoint prefix in it), encodes the training split, and picks --budget
images by USL (keras_ssl.selection.select_usl: k-means into the budget, kNN
density, the regulariser that spreads the picks), or with --method=usl-t by
USL-T (keras_ssl.selection.select_uslt: trains cluster heads, and by default
the encoder, for --uslt_epochs, then one confident pick per cluster; the run
folder is not written to).

The output file lists one dataset index per line (ascending, after '#'
comment lines saying how they were chosen): positions in the training split
after the subset flags (--train_per_class, --imbalance_ratio), which is what
train.py --label_indices=FILE reads, so give both programs the same subset
flags. Labels of the data, when it has them, are never used for the choice;
the JSON line only reports how many classes the picks cover.

The features are the encoder's (the backbone a run saves), L2-normalised;
the official USL uses the 128-d normalised projection head of a CLD model.
The defaults are the official CIFAR-10 settings; CIFAR-100's are
--reg_weight=1 --reg_horizon=1 --reg_alpha=1.
Bad flags or paths end with one error line and exit status 2.
"""

import os

from absl import app, flags, logging

# Importing any keras_ssl module runs keras_ssl/__init__.py first, which sets
# TensorFlow's environment before TensorFlow is imported.
from keras_ssl.cli.common import check_checkpoint_path, check_data_spec, json_main

KMEANS_INITS = ("random", "kmeans++")
METHODS = ("usl", "usl-t")

FLAGS = flags.FLAGS


def define_flags():
    """Defines the program's flags (once per process)."""
    if "budget" in FLAGS:
        return
    flags.DEFINE_string("checkpoint", None,
                        "A training run's --model_dir, or a checkpoint prefix in it.")
    flags.DEFINE_string("data", None, "Image folder path, tfds:NAME or npz:PATH.")
    flags.DEFINE_integer("budget", None, "Number of images to label.", lower_bound=1)
    flags.DEFINE_enum("method", "usl", METHODS, "USL (no training) or USL-T (trained heads).")
    flags.DEFINE_enum("features", "projector", ("projector", "backbone"),
                      "USL's features: the run's projection head (the official choice: "
                      "the 128-d instance head) or the backbone's. USL-T trains on the backbone.")
    flags.DEFINE_string("output", None, "File to write, one dataset index per line.")
    flags.DEFINE_integer("image_size", 0,
                         "Side images are resized to (0: the run's training size).",
                         lower_bound=0)
    flags.DEFINE_integer("train_per_class", 0, "First N training images of each class (0: all).",
                         lower_bound=0)
    flags.DEFINE_float("imbalance_ratio", 0.0, "Long-tail subset with this ratio (0: balanced).")
    flags.DEFINE_integer("batch_size", 512, "Batch size of feature extraction.", lower_bound=1)
    flags.DEFINE_integer("seed", 1, "k-means seed (the official runs use 1 to 5).")
    flags.DEFINE_integer("knn_k", 400, "Neighbours of the kNN density, self included.",
                         lower_bound=1)
    flags.DEFINE_integer("num_clusters", 0,
                         "k-means clusters (0: the budget; more leaves room for empty ones).",
                         lower_bound=0)
    flags.DEFINE_integer("kmeans_iters", 200, "Lloyd iterations of the k-means.", lower_bound=1)
    flags.DEFINE_enum("kmeans_init", "random", KMEANS_INITS,
                      "k-means start: random rows (official) or k-means++ seeding.")
    flags.DEFINE_integer("reg_iters", 10, "Rounds of regularised picking.", lower_bound=1)
    flags.DEFINE_float("reg_weight", 0.5, "Weight of the regulariser against the density.")
    flags.DEFINE_float("reg_momentum", 0.9, "Momentum of the regulariser's moving average.")
    flags.DEFINE_float("reg_horizon", 4.0,
                       "Squared feature distance beyond which picks do not repel (0: no limit).")
    flags.DEFINE_float("reg_alpha", 0.5, "Exponent of the repulsion distance ** -alpha.")
    flags.DEFINE_integer("uslt_epochs", 200, "USL-T: training epochs.", lower_bound=1)
    flags.DEFINE_integer("uslt_batch_size", 1024, "USL-T: training batch size.", lower_bound=1)
    flags.DEFINE_float("uslt_learning_rate", 1e-4, "USL-T: Adam learning rate.")
    flags.DEFINE_integer("uslt_num_neighbors", 20,
                         "USL-T: neighbours of the local loss, besides the image itself.",
                         lower_bound=1)
    flags.DEFINE_boolean("uslt_train_encoder", True,
                         "USL-T: train the encoder with the heads (official) or the heads alone.")


def check_flags():
    """Validates what absl cannot, before TensorFlow is imported."""
    for name in ("checkpoint", "data", "budget", "output"):
        if FLAGS[name].value is None:
            raise ValueError(f"--{name} is required.")
    if FLAGS.num_clusters and FLAGS.num_clusters < FLAGS.budget:
        raise ValueError(f"--num_clusters={FLAGS.num_clusters} must be 0 or at least "
                         f"--budget={FLAGS.budget}.")
    if not 0.0 <= FLAGS.reg_momentum <= 1.0:
        raise ValueError(f"--reg_momentum={FLAGS.reg_momentum}: must be in [0, 1].")
    if FLAGS.reg_horizon < 0:
        raise ValueError(f"--reg_horizon={FLAGS.reg_horizon}: must be >= 0 (0: no limit).")
    output_dir = os.path.dirname(os.path.abspath(os.path.expanduser(FLAGS.output)))
    if os.path.isdir(os.path.expanduser(FLAGS.output)):
        raise ValueError(f"--output={FLAGS.output} is a folder; give a file path.")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"--output={FLAGS.output}: {output_dir} is not a folder.")
    check_checkpoint_path(FLAGS.checkpoint)
    check_data_spec(FLAGS.data)


def select_labels():
    check_flags()
    import numpy as np
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    from keras_ssl import data as ssl_data
    from keras_ssl.training import (find_checkpoint, load_run_config, load_training_data,
                                    restore_encoder, restore_projection)

    # The run's config alone sizes the data; its network is restored once, below.
    model_dir, prefix = find_checkpoint(FLAGS.checkpoint)
    image_size = FLAGS.image_size or load_run_config(model_dir)["image_size"]
    _, train, _ = load_training_data(FLAGS.data, image_size=image_size,
                                     train_per_class=FLAGS.train_per_class,
                                     imbalance_ratio=FLAGS.imbalance_ratio)
    if FLAGS.budget > len(train):
        raise ValueError(f"--budget={FLAGS.budget} is more than the {len(train)} training "
                         "images.")
    if FLAGS.method == "usl" and FLAGS.features == "projector":
        encoder, *_ = restore_projection(FLAGS.checkpoint, num_examples=len(train))
    else:
        encoder, *_ = restore_encoder(FLAGS.checkpoint)
    if FLAGS.method == "usl":
        chosen = select_usl(encoder, train, image_size)
        extra = {"features": FLAGS.features}
    else:
        chosen = select_uslt(encoder, train, image_size)
        extra = {"empty_clusters": chosen.num_empty_clusters,
                 "uslt_loss": float(chosen.history["loss"][-1])}
    indices = np.sort(chosen.indices)

    output = os.path.expanduser(FLAGS.output)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    header = (f"{FLAGS.method.upper()} label selection: {FLAGS.budget} of {len(train)} "
              f"training images of {FLAGS.data} (train_per_class={FLAGS.train_per_class}, "
              f"imbalance_ratio={FLAGS.imbalance_ratio}), encoder {prefix}, seed {FLAGS.seed}.")
    ssl_data.write_label_indices(output, indices, header=header)

    # Labels only describe the result; the choice never saw them.
    known = train.labels[indices][train.labels[indices] >= 0]
    return {"method": FLAGS.method, "output": output, "budget": int(FLAGS.budget),
            "checkpoint": prefix, "model_dir": model_dir, "data": FLAGS.data,
            "image_size": int(image_size), "train_images": len(train),
            "feature_dim": int(encoder.output_shape[-1]), "seed": FLAGS.seed,
            "nonempty_clusters": int(len(np.unique(chosen.assignments))),
            "classes_covered": int(len(np.unique(known))) if known.size else None, **extra}


def select_usl(encoder, train, image_size):
    """USL on the L2-normalised encoder features of the training split."""
    from keras_ssl import data as ssl_data
    from keras_ssl import evaluation, selection
    if FLAGS.knn_k > len(train):
        raise ValueError(f"--knn_k={FLAGS.knn_k} is more than the {len(train)} training images; "
                         "pass a smaller --knn_k.")
    features, _ = evaluation.extract_features(
        encoder, ssl_data.eval_dataset(train, batch_size=FLAGS.batch_size,
                                       image_size=image_size), normalize=True)
    return selection.select_usl(
        features, FLAGS.budget, num_clusters=FLAGS.num_clusters or None, knn_k=FLAGS.knn_k,
        kmeans_iters=FLAGS.kmeans_iters, kmeans_init=FLAGS.kmeans_init,
        reg_iters=FLAGS.reg_iters, reg_weight=FLAGS.reg_weight,
        reg_momentum=FLAGS.reg_momentum, reg_horizon=FLAGS.reg_horizon or None,
        reg_alpha=FLAGS.reg_alpha, seed=FLAGS.seed)


def select_uslt(encoder, train, image_size):
    """USL-T on the decoded training images (the split's positions unchanged)."""
    from keras_ssl import data as ssl_data
    from keras_ssl import selection
    if FLAGS.uslt_num_neighbors >= len(train):
        raise ValueError(f"--uslt_num_neighbors={FLAGS.uslt_num_neighbors} needs more than the "
                         f"{len(train)} training images; pass a smaller value.")
    decoded = ssl_data.decode_split(train, image_size)
    if len(decoded) != len(train):
        raise ValueError(f"--data={FLAGS.data}: {len(train) - len(decoded)} training images "
                         "cannot be decoded, which would shift the dataset indices; remove them.")
    return selection.select_uslt(
        encoder, decoded.images, FLAGS.budget, epochs=FLAGS.uslt_epochs,
        batch_size=FLAGS.uslt_batch_size, learning_rate=FLAGS.uslt_learning_rate,
        num_neighbors=FLAGS.uslt_num_neighbors, train_encoder=FLAGS.uslt_train_encoder,
        seed=FLAGS.seed, eval_batch_size=FLAGS.batch_size)


def main():
    """Console entry point of keras-ssl-select-labels."""
    define_flags()
    logging.set_verbosity(logging.WARNING)
    app.run(json_main(select_labels))


if __name__ == "__main__":
    main()

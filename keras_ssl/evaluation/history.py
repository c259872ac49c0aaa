"""Per-epoch training history read back from the TensorBoard logs of a run."""

import math
import os

import tensorflow as tf

# keras.callbacks.TensorBoard writes epoch-level scalars as "epoch_<name>".
_EPOCH_PREFIX = "epoch_"


def _write_order(path):
    # Event files are named events.out.tfevents.<unix seconds>.<host>...
    stamp = os.path.basename(path).split(".")[3]
    return (int(stamp) if stamp.isdigit() else 0, path)


def read_tensorboard_history(log_dir):
    """Epoch scalars of a run's TensorBoard logs, shaped like `History.history`.

    Reads every event file below `log_dir/train` (or `log_dir` itself), so a
    run resumed several times, which starts a new event file each time, reads
    as one history; when two files log the same epoch, the newer file wins.
    The logs may be on any TensorFlow file system (`gs://...`).

    Args:
        log_dir: the folder handed to `keras.callbacks.TensorBoard`.

    Returns:
        dict name -> list of per-epoch floats, epoch 1 first, NaN where an
        epoch has no value (e.g. "knn_top1" evaluated every few epochs); names
        drop the "epoch_" prefix ("loss", "knn_top1", "learning_rate").
        Empty when there are no logs.

    Example:
        >>> plot_training_curves(read_tensorboard_history("runs/simclr/logs"), "curves.png")
    """
    train_dir = os.path.join(log_dir, "train")
    folder = train_dir if tf.io.gfile.isdir(train_dir) else log_dir
    files = sorted(tf.io.gfile.glob(os.path.join(folder, "events.out.tfevents.*")),
                   key=_write_order)
    values = {}  # name -> {epoch index: value}
    for path in files:
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if not value.tag.startswith(_EPOCH_PREFIX):
                    continue
                if value.HasField("tensor"):
                    number = float(tf.make_ndarray(value.tensor))
                else:
                    number = float(value.simple_value)
                values.setdefault(value.tag[len(_EPOCH_PREFIX):], {})[event.step] = number
    num_epochs = max((max(steps) + 1 for steps in values.values()), default=0)
    return {name: [steps.get(epoch, math.nan) for epoch in range(num_epochs)]
            for name, steps in values.items()}

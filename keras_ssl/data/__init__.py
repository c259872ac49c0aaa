"""Data: sources (image folder, tfds, npz) -> subsets -> deterministic tf.data pipelines.

Example:
    >>> source = load_source("/data/cifar10")
    >>> train = per_class_subset(source.train, per_class=1000)
    >>> dataset = train_dataset(train, batch_size=256, view_fn=None, seed=0)

Semi-supervised (a labeled stream beside the unlabeled one, labels of the latter hidden):
    >>> labeled = LabeledStream.from_budget(source.train, batch_size=64, labels_per_class=4, seed=0)
    >>> dataset = train_dataset(source.train, batch_size=448, seed=0, labeled=labeled, hide_labels=True)
"""

from keras_ssl.data.decode import decode_split
from keras_ssl.data.label_budgets import (
    labeled_indices,
    labeled_subset,
    read_label_indices,
    write_label_indices,
)
from keras_ssl.data.labeled_stream import ClassBalancedSampler, LabeledStream
from keras_ssl.data.pipeline import (
    distributed_train_dataset,
    eval_dataset,
    plain_views,
    steps_per_epoch,
    train_dataset,
)
from keras_ssl.data.sources import load_source
from keras_ssl.data.split import DataSource, Split
from keras_ssl.data.subsets import long_tail_counts, long_tail_subset, per_class_subset

__all__ = [
    "ClassBalancedSampler",
    "DataSource",
    "LabeledStream",
    "Split",
    "decode_split",
    "distributed_train_dataset",
    "eval_dataset",
    "labeled_indices",
    "labeled_subset",
    "load_source",
    "long_tail_counts",
    "long_tail_subset",
    "per_class_subset",
    "plain_views",
    "read_label_indices",
    "steps_per_epoch",
    "train_dataset",
    "write_label_indices",
]

"""Data: sources (image folder, tfds, npz) -> subsets -> deterministic tf.data pipelines.

Example:
    >>> source = load_source("/data/cifar10")
    >>> train = per_class_subset(source.train, per_class=1000)
    >>> dataset = train_dataset(train, batch_size=256, view_fn=None, seed=0)
"""

from keras_ssl.data.decode import decode_split
from keras_ssl.data.pipeline import (
    distributed_train_dataset,
    eval_dataset,
    steps_per_epoch,
    train_dataset,
)
from keras_ssl.data.sources import load_source
from keras_ssl.data.split import DataSource, Split
from keras_ssl.data.subsets import long_tail_counts, long_tail_subset, per_class_subset

__all__ = [
    "DataSource",
    "Split",
    "decode_split",
    "distributed_train_dataset",
    "eval_dataset",
    "load_source",
    "long_tail_counts",
    "long_tail_subset",
    "per_class_subset",
    "steps_per_epoch",
    "train_dataset",
]

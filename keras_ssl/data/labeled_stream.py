"""The labeled stream of semi-supervised training and its class-balanced sampler.

A semi-supervised step sees two batches: one of the unlabeled stream (the whole training
split, `train_dataset`'s usual element) and one of a labeled set drawn beside it with its own
batch size. `train_dataset(..., labeled=LabeledStream(...))` adds the second batch to every
element as element["labeled"]; `keras_ssl.methods.contract.Batch.from_element` turns it
into `Batch.labeled`.

The sampler (`ClassBalancedSampler`) makes the labeled stream a pure function of (seed,
step), like the unlabeled one is of (seed, epoch), so resuming replays it exactly:

- Slots. The stream is an endless row of slots 0, 1, 2, ...; labeled batch t (t = the
  global step, epoch * steps_per_epoch + step in epoch) is slots [t * b, (t + 1) * b).
- Classes, round robin. Slot g belongs to class order[g mod C], where `order` is the C
  classes in a seeded order. Every batch therefore holds each class b // C or b // C + 1
  times: when b is a multiple of C exactly b / C; otherwise the b % C extra rows go to
  b % C different classes, the next ones in the rotation (it advances by b % C classes per
  step), so over any C consecutive steps every class gets exactly b rows. Batch sizes
  below C are allowed (each batch then holds b different classes). Rows alternate between
  classes, so a replica's contiguous share of the batch is class-balanced too.
- Within a class, without replacement. Slot g is draw d = g div C of its class. The class
  is walked in passes of n_c draws (n_c = its labeled examples); pass m = d div n_c is a
  fresh permutation of the class, ranked by SplitMix64 keys of (seed, class, m, member), and
  draw d takes its member at d mod n_c. Every example is seen once per pass of its class;
  a class smaller than its share of a batch repeats rows within the batch (a new pass
  begins).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from keras_ssl.data.label_budgets import _check_indices, labeled_indices
from keras_ssl.data.mixing import (
    SALT_CLASS_ORDER,
    SALT_CLASS_PASS,
    as_uint64,
    sortable,
    splitmix64,
    splitmix64_tf,
    stream_base,
)
from keras_ssl.data.readers import FileReader, InMemoryReader
from keras_ssl.data.split import Split

_INT64_MAX = np.iinfo(np.int64).max


class ClassBalancedSampler:
    """Class-balanced batches of a labeled set, as a pure function of (seed, step).

    See the module docstring for the rule (round-robin classes in a seeded order, a fresh
    seeded permutation of each class on each pass through it).

    Args:
        labels: int [K] class of each labeled row; all must be >= 0.
        batch_size: b, rows per (global) batch.
        seed: the run's data seed.
        values: int [K] what to return for each row (for example its dataset index);
            default its position 0..K-1.

    Example:
        >>> sampler = ClassBalancedSampler(labels=[0, 0, 1, 1, 1], batch_size=4, seed=0)
        >>> sampler.rows(step=7).numpy()  # positions of batch 7: two of class 0, two of class 1
    """

    def __init__(self, labels, batch_size: int, seed: int, values=None):
        labels = np.asarray(labels, dtype=np.int64)
        if labels.ndim != 1 or not len(labels):
            raise ValueError(
                f"The labeled set needs at least one labeled example, got labels of shape {labels.shape}."
            )
        if np.any(labels < 0):
            raise ValueError(f"The labeled set holds {int(np.sum(labels < 0))} unlabeled (-1) examples.")
        if int(batch_size) != batch_size or batch_size <= 0:
            raise ValueError(f"The labeled batch size must be a positive integer, got {batch_size}.")
        values = np.arange(len(labels)) if values is None else values
        values = np.asarray(values, dtype=np.int64)
        if values.shape != labels.shape:
            raise ValueError(f"values has shape {values.shape}, labels {labels.shape}; they must match.")

        classes = np.unique(labels)
        with np.errstate(over="ignore"):
            order_keys = splitmix64(stream_base(seed, SALT_CLASS_ORDER) + classes.astype(np.uint64))
            self.class_order = classes[np.argsort(order_keys, kind="stable")]
            pass_bases = splitmix64(stream_base(seed, SALT_CLASS_PASS) + self.class_order.astype(np.uint64))
        members = [values[labels == c] for c in self.class_order]  # stored order within a class
        self.class_sizes = np.array([len(m) for m in members], dtype=np.int64)
        padded = np.full([len(members), self.class_sizes.max()], -1, dtype=np.int64)
        for row, member in zip(padded, members):
            row[: len(member)] = member
        self.batch_size = int(batch_size)
        self.num_classes = len(classes)
        self._members = padded
        self._pass_bases = pass_bases

    def rows(self, step, start: int | tf.Tensor = 0, size: int | None = None) -> tf.Tensor:
        """The values of slots [step * b + start, step * b + start + size) of the stream.

        Args:
            step: int scalar (tensor), the global training step t.
            start: first row of batch t to return (a replica's offset).
            size: rows to return; default the whole batch b.

        Returns:
            int64 [size] values (by default positions in `labels`).
        """
        size = self.batch_size if size is None else size
        num_classes = tf.constant(self.num_classes, tf.int64)
        sizes = tf.constant(self.class_sizes)
        slots = (tf.cast(step, tf.int64) * self.batch_size + tf.cast(start, tf.int64)
                 + tf.range(size, dtype=tf.int64))
        turn = slots % num_classes  # position of the slot's class in class_order
        draw = slots // num_classes  # how many earlier slots went to that class
        class_size = tf.gather(sizes, turn)
        passes, within = draw // class_size, draw % class_size

        # One permutation per (class, pass) present in this batch, shared by its rows.
        pairs, which = tf.unique(turn + num_classes * passes, out_idx=tf.int64)
        pair_turn, pair_pass = pairs % num_classes, pairs // num_classes
        pass_key = splitmix64_tf(tf.gather(tf.constant(self._pass_bases), pair_turn) + as_uint64(pair_pass))
        member = tf.range(self._members.shape[1], dtype=tf.int64)
        keys = sortable(splitmix64_tf(pass_key[:, None] + as_uint64(member)[None, :]))
        real = member[None, :] < tf.gather(sizes, pair_turn)[:, None]
        keys = tf.where(real, keys, tf.constant(_INT64_MAX, tf.int64))  # padding sorts last
        permutations = tf.argsort(keys, axis=1, stable=True)
        chosen = tf.gather_nd(permutations, tf.stack([which, within], axis=1))
        return tf.gather_nd(tf.constant(self._members), tf.stack([turn, tf.cast(chosen, tf.int64)], axis=1))


@dataclasses.dataclass(frozen=True, eq=False)
class LabeledStream:
    """A labeled set drawn beside the unlabeled stream, with its own batch size and views.

    Args:
        split: the split holding the labeled examples, usually the whole training split
            together with `indices` (then the stream's "index" is the dataset index, the
            same numbering as the unlabeled stream's), or a labeled subset on its own.
        batch_size: the global labeled batch size b (over all replicas).
        view_fn: view_fn(images uint8 [b, H, W, 3], seed int32 [2]) -> views, as in
            `train_dataset`; None uses the unlabeled stream's view_fn. Its augmentation
            seeds differ from the unlabeled stream's.
        indices: positions in `split` of the labeled examples (see `labeled_indices`);
            None takes every example whose label is known (>= 0). Kept sorted.

    Example:
        >>> stream = LabeledStream.from_budget(source.train, batch_size=64, labels_per_class=4)
        >>> dataset = train_dataset(source.train, batch_size=448, seed=0, labeled=stream,
        ...                         hide_labels=True)
    """

    split: Split
    batch_size: int
    view_fn: Callable | None = None
    indices: np.ndarray | None = None

    def __post_init__(self):
        size = self.batch_size
        if isinstance(size, bool) or int(size) != size or size <= 0:
            raise ValueError(f"The labeled batch_size must be a positive integer, got {self.batch_size}.")
        if self.indices is None:
            rows = np.flatnonzero(self.split.labels >= 0)
            if not len(rows):
                raise ValueError("The labeled stream's split has no labeled examples (every label is -1).")
        else:
            rows = np.sort(_check_indices(self.indices, len(self.split), " of the labeled stream"))
            unknown = rows[self.split.labels[rows] < 0]
            if unknown.size:
                raise ValueError(
                    f"Labeled stream index {int(unknown[0])} names an unlabeled (-1) example; "
                    f"{unknown.size} of the {rows.size} indices do."
                )
        object.__setattr__(self, "indices", rows)
        object.__setattr__(self, "batch_size", int(self.batch_size))

    @classmethod
    def from_budget(
        cls,
        split: Split,
        batch_size: int,
        *,
        labels_per_class: int | None = None,
        fraction: float | None = None,
        indices=None,
        seed: int = 0,
        view_fn: Callable | None = None,
    ) -> LabeledStream:
        """The stream of a label budget of `split` (arguments as in `labeled_indices`)."""
        chosen = labeled_indices(
            split, labels_per_class=labels_per_class, fraction=fraction, indices=indices, seed=seed
        )
        return cls(split=split, batch_size=batch_size, view_fn=view_fn, indices=chosen)

    @property
    def labels(self) -> np.ndarray:
        """int64 [K] labels of the labeled examples, in the order of `indices`."""
        return self.split.labels[self.indices]

    def __len__(self) -> int:
        return len(self.indices)


class LabeledReader:
    """Reads a replica's share of labeled batch t: sampler rows -> uint8 images, labels, indices.

    Args:
        stream: the LabeledStream.
        seed: the run's data seed (the sampler's).
        image_size: resize images to image_size x image_size (as the unlabeled stream).
        shared_split, shared_reader: the unlabeled stream's split and in-memory reader; when
            the labeled stream reads the very same split, it gathers from that reader
            instead of holding a second copy of the images.
    """

    def __init__(self, stream: LabeledStream, *, seed: int, image_size: int | None,
                 shared_split: Split | None = None, shared_reader=None):
        if stream.split is shared_split and isinstance(shared_reader, InMemoryReader):
            self._reader, values, self._index = shared_reader, stream.indices, None
        else:
            subset = stream.split.take(stream.indices)
            if subset.images is not None:
                self._reader = InMemoryReader(subset, image_size)
            else:
                self._reader = FileReader(subset, image_size).gather
            values, self._index = np.arange(len(subset), dtype=np.int64), stream.indices
        self.sampler = ClassBalancedSampler(stream.labels, stream.batch_size, seed, values=values)

    def __call__(self, step, start, size: int) -> dict[str, tf.Tensor]:
        """{"images": uint8 [size, H, W, 3], "label": int64 [size], "index": int64 [size]}."""
        rows = self.sampler.rows(step, start, size)
        batch = dict(self._reader(rows))
        if self._index is not None:
            batch["index"] = tf.gather(tf.constant(self._index), rows)
        return batch

"""Label budgets: which examples of a training split keep their labels.

Three ways to name the labeled set of a semi-supervised run, as `--labels_per_class=N`,
`--label_fraction=F` and `--label_indices=FILE`:

- `labels_per_class=N`: N examples of every class.
- `fraction=F`: round(F * number of labeled examples) labels in all, spread evenly over the
  classes ("class-balanced", as the 1% and 10% ImageNet subsets of S4L and SimCLR): every
  class gets total // C, and total % C classes (chosen by the seed) get one more.
- `indices`: an explicit list of dataset indices, or a file with one index per line (the
  output of USL label selection, or any list a user brings).

The draws are deterministic for a seed: every example i gets the key
splitmix64(base(seed) + i), and a class keeps its examples of smallest key. The rule is
fixed arithmetic, so a seed picks the same images on every machine and library version,
and budgets of one seed are nested: the 4 labels per class of seed s are among its 25.

Example:
    >>> chosen = labeled_indices(source.train, labels_per_class=4, seed=0)  # 40 on CIFAR-10
    >>> write_label_indices("labels_40.txt", chosen)
    >>> labeled = labeled_subset(source.train, indices="labels_40.txt")
"""

from __future__ import annotations

import os
import re

import numpy as np
import tensorflow as tf

from keras_ssl.data.mixing import SALT_BUDGET, SALT_BUDGET_CLASSES, splitmix64, stream_base
from keras_ssl.data.split import Split

_INDEX_LINE = re.compile(r"[0-9]+")


def _keys(seed: int, salt: int, values: np.ndarray) -> np.ndarray:
    """uint64 hash key of each value in one salted stream of `seed` (distinct values, distinct keys)."""
    with np.errstate(over="ignore"):
        return splitmix64(stream_base(seed, salt) + np.asarray(values).astype(np.uint64))


def _classes(split: Split, what: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """(class labels ascending, stored-order positions of each); unknown (-1) rows are skipped."""
    labels = split.labels
    classes = np.unique(labels[labels >= 0])
    if not len(classes):
        raise ValueError(f"{what} needs labels, but every example of the split is unlabeled (-1).")
    return classes, [np.flatnonzero(labels == c) for c in classes]


def _per_class_counts(split: Split, classes: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Labels per class for `fraction`: an even share of round(F * N), remainder to seeded classes."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
    pool = int(np.sum(split.labels >= 0))
    total = int(np.floor(fraction * pool + 0.5))
    if total < len(classes):
        raise ValueError(
            f"fraction={fraction} of {pool} labeled examples is {total} labels, fewer than one for "
            f"each of the {len(classes)} classes; raise the fraction or use labels_per_class."
        )
    counts = np.full(len(classes), total // len(classes), dtype=np.int64)
    extra = total % len(classes)
    if extra:
        lucky = np.argsort(_keys(seed, SALT_BUDGET_CLASSES, classes), kind="stable")[:extra]
        counts[lucky] += 1
    return counts


def _check_indices(indices, num_examples: int, where: str = "") -> np.ndarray:
    """Validated int64 indices: integers in [0, num_examples), each at most once."""
    array = np.asarray(indices)
    if array.ndim != 1:
        raise ValueError(f"Label indices{where} must be a flat list of integers, got shape {array.shape}.")
    if array.size == 0:
        raise ValueError(f"Label indices{where}: the list is empty.")
    if not np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.floating) and np.all(array == np.floor(array)):
            array = array.astype(np.int64)
        else:
            raise ValueError(f"Label indices{where} must be integers, got dtype {array.dtype}.")
    array = array.astype(np.int64)
    bad = array[(array < 0) | (array >= num_examples)]
    if bad.size:
        raise ValueError(
            f"Label index {int(bad[0])}{where} is out of range: the split has {num_examples} "
            f"examples (valid indices 0..{num_examples - 1}); {bad.size} indices are out of range."
        )
    values, counts = np.unique(array, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"Label index {int(values[counts > 1][0])}{where} is listed more than once.")
    return array


def labeled_indices(
    split: Split,
    *,
    labels_per_class: int | None = None,
    fraction: float | None = None,
    indices=None,
    seed: int = 0,
) -> np.ndarray:
    """Dataset indices (positions in `split`) of a label budget, sorted ascending.

    Give exactly one of `labels_per_class`, `fraction` and `indices`. Examples whose label
    is unknown (-1) are never drawn; classes are the labels present in the split.

    Args:
        split: the training split whose labels the budget keeps.
        labels_per_class: N labels of every class.
        fraction: F in (0, 1]: round(F * labeled examples) labels, equal per class (the
            remainder of total / C goes to total % C classes chosen by the seed).
        indices: explicit dataset indices, or the path of a file of them (one per line,
            see `read_label_indices`).
        seed: selects the examples (and the classes that get the remainder).

    Returns:
        int64 [K] positions in `split`, ascending.

    Raises:
        ValueError: for no or several budgets, a class with fewer examples than asked, an
            index out of range or listed twice, an index of an unlabeled example, or a
            file that does not parse (the message names the file and line).
    """
    budgets = {"labels_per_class": labels_per_class, "fraction": fraction, "indices": indices}
    given = [name for name, value in budgets.items() if value is not None]
    if len(given) != 1:
        raise ValueError(
            "Give exactly one label budget: labels_per_class, fraction or indices; "
            f"got {given or 'none'}."
        )

    if indices is not None:
        if isinstance(indices, (str, os.PathLike)):
            chosen = read_label_indices(indices, num_examples=len(split))
        else:
            chosen = _check_indices(indices, len(split))
        unknown = chosen[split.labels[chosen] < 0]
        if unknown.size:
            raise ValueError(
                f"Label index {int(unknown[0])} names an unlabeled (-1) example; "
                f"{unknown.size} of the {chosen.size} indices do."
            )
        return np.sort(chosen)

    classes, members = _classes(split, "A label budget")
    if labels_per_class is not None:
        if int(labels_per_class) != labels_per_class or labels_per_class <= 0:
            raise ValueError(f"labels_per_class must be a positive integer, got {labels_per_class}.")
        counts = np.full(len(classes), int(labels_per_class), dtype=np.int64)
        asked = f"labels_per_class={labels_per_class}"
    else:
        counts = _per_class_counts(split, classes, float(fraction), seed)
        asked = f"fraction={fraction}"

    chosen = []
    for label, positions, count in zip(classes, members, counts):
        if len(positions) < count:
            raise ValueError(
                f"{asked} asks for {count} labels of class {int(label)}, which has only "
                f"{len(positions)} examples in the split."
            )
        order = np.argsort(_keys(seed, SALT_BUDGET, positions), kind="stable")
        chosen.append(positions[order[:count]])
    return np.sort(np.concatenate(chosen))


def labeled_subset(
    split: Split,
    *,
    labels_per_class: int | None = None,
    fraction: float | None = None,
    indices=None,
    seed: int = 0,
) -> Split:
    """The examples of a label budget as a Split, in stored order.

    Arguments as in `labeled_indices`, which gives the positions of these examples in
    `split`. To keep dataset indices in the labeled stream (so that its "index" agrees with
    the unlabeled stream's), pass the whole split and these indices to `LabeledStream`
    instead of the subset.

    Example:
        >>> labeled = labeled_subset(source.train, labels_per_class=25, seed=1)  # 250 labels
    """
    chosen = labeled_indices(
        split, labels_per_class=labels_per_class, fraction=fraction, indices=indices, seed=seed
    )
    return split.take(chosen)


def read_label_indices(path, num_examples: int | None = None) -> np.ndarray:
    """Dataset indices from a text file with one non-negative integer per line, in file order.

    Blank lines and lines starting with '#' are skipped.

    Args:
        path: the file.
        num_examples: when given, every index must be below it (the split's size).

    Returns:
        int64 [K] indices, in the order of the file.

    Raises:
        ValueError: when the file is missing or empty, or a line is not an index, is out of
            range or repeats an earlier one; the message names the file and the line.
    """
    path = os.fspath(path)
    # tf.io.gfile, so the file may be on any TensorFlow file system (gs://...).
    if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
        raise ValueError(f"Label index file {path!r} does not exist.")
    values, first_line = [], {}
    with tf.io.gfile.GFile(path, "r") as f:
        for number, raw in enumerate(f, start=1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            if not _INDEX_LINE.fullmatch(text):  # digits only: no sign, point or second value
                raise ValueError(
                    f"{path}, line {number}: {text!r} is not a dataset index "
                    "(expected one non-negative integer per line)."
                )
            value = int(text)
            if num_examples is not None and value >= num_examples:
                raise ValueError(
                    f"{path}, line {number}: index {value} is out of range for a split of "
                    f"{num_examples} examples (valid indices 0..{num_examples - 1})."
                )
            if value in first_line:
                raise ValueError(
                    f"{path}, line {number}: index {value} repeats line {first_line[value]}."
                )
            first_line[value] = number
            values.append(value)
    if not values:
        raise ValueError(f"Label index file {path!r} lists no indices.")
    return np.asarray(values, dtype=np.int64)


def write_label_indices(path, indices, *, header: str | None = None) -> None:
    """Writes dataset indices one per line, the format `read_label_indices` reads.

    Args:
        path: the file to write (its folder must exist).
        indices: non-negative integers, each at most once.
        header: optional text written first as '#' comment lines (for example how the
            indices were chosen).
    """
    array = np.asarray(indices)
    if array.size and np.any(array < 0):
        raise ValueError(f"Label indices must be non-negative, got {int(array[array < 0][0])}.")
    array = _check_indices(array, int(array.max()) + 1 if array.size else 0)
    lines = [f"# {line}\n" for line in (header or "").splitlines()]
    lines += [f"{int(i)}\n" for i in array]
    with tf.io.gfile.GFile(os.fspath(path), "w") as f:  # any TensorFlow file system
        f.write("".join(lines))

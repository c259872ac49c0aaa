"""Deterministic labeled subsets: N per class, and long-tailed (exponential) class sizes.

Both take the first examples of each class in stored order (sorted file order for image
folders), never a random draw, so the same subset comes back on every machine and run.
"""

from __future__ import annotations

import numpy as np

from keras_ssl.data.split import Split


def _class_indices(split: Split, what: str) -> list[np.ndarray]:
    """Stored-order positions of each class present in `split`, by ascending label."""
    if not split.is_labeled:
        raise ValueError(f"{what} needs a labeled split; this one has unlabeled (-1) examples.")
    labels = split.labels
    return [np.flatnonzero(labels == c) for c in np.unique(labels)]


def _take_first(split: Split, per_class_indices: list[np.ndarray], counts: list[int]) -> Split:
    chosen = np.concatenate([indices[:count] for indices, count in zip(per_class_indices, counts)])
    # Keep the stored order (not class by class) so the subset reads like the source.
    return split.take(np.sort(chosen))


def per_class_subset(split: Split, per_class: int) -> Split:
    """The first `per_class` examples of every class, in stored order.

    A class with fewer examples contributes all it has. Used for the few-label settings of
    semi-supervised evaluation and for small CPU presets.

    Args:
        split: a labeled split.
        per_class: examples kept per class.

    Example:
        >>> labeled = per_class_subset(source.train, per_class=25)  # 250 images on CIFAR-10
    """
    if per_class <= 0:
        raise ValueError(f"per_class must be positive, got {per_class}.")
    indices = _class_indices(split, "per_class_subset")
    return _take_first(split, indices, [per_class] * len(indices))


def long_tail_counts(num_classes: int, n_max: int, imbalance_ratio: float) -> list[int]:
    """Class sizes n_c = floor(n_max * R^(-c / (C - 1))) for c = 0..C-1.

    The largest class has n_max examples and the smallest n_max / R, the exponential
    profile of CIFAR-10-LT (Cui et al., 2019). n_max=1000, R=100, C=10 gives
    1000, 599, 359, 215, 129, 77, 46, 27, 16, 10.

    Args:
        num_classes: C.
        n_max: size of class 0.
        imbalance_ratio: R = n_max / n_min, at least 1.
    """
    if num_classes == 1:
        return [n_max]
    return [int(n_max * imbalance_ratio ** (-c / (num_classes - 1))) for c in range(num_classes)]


def long_tail_subset(split: Split, imbalance_ratio: float, max_per_class: int | None = None) -> Split:
    """A long-tailed subset: class c keeps its first floor(n_max * R^(-c/(C-1))) examples.

    Classes are ranked by label (class 0 is the head). A class smaller than its target
    keeps all it has.

    Args:
        split: a labeled split.
        imbalance_ratio: R, the ratio of the largest to the smallest class size (>= 1).
        max_per_class: n_max, the size of class 0; default is the smallest class size,
            so that every class can fill its target.

    Example:
        >>> lt = long_tail_subset(source.train, imbalance_ratio=100, max_per_class=1000)
        >>> len(lt)  # on CIFAR-10
        2478
    """
    if imbalance_ratio < 1:
        raise ValueError(f"imbalance_ratio must be >= 1 (largest / smallest class), got {imbalance_ratio}.")
    indices = _class_indices(split, "long_tail_subset")
    n_max = max_per_class if max_per_class is not None else min(len(i) for i in indices)
    if n_max <= 0:
        raise ValueError(f"max_per_class must be positive, got {n_max}.")
    return _take_first(split, indices, long_tail_counts(len(indices), n_max, imbalance_ratio))

"""The containers every data stage hands to the next: `Split` and `DataSource`."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Split:
    """One split of a data set: images in memory or image files on disk, plus labels.

    Exactly one of `images` and `paths` is set. Small data sets are decoded up front
    into `images` (the fast path); data sets too large for memory keep `paths` and
    are decoded inside the `tf.data` pipeline.

    Args:
        images: uint8 array [N, H, W, 3] when decoded in memory, else None.
        paths: image file paths when streamed from disk, else None.
        labels: int64 array [N]; -1 marks unlabeled examples.

    Example:
        >>> split = Split(images=np.zeros([2, 8, 8, 3], np.uint8), paths=None, labels=[0, 1])
        >>> len(split)
        2
    """

    images: np.ndarray | None
    paths: list[str] | None
    labels: np.ndarray

    def __post_init__(self):
        # Normalise here so every later stage can rely on int64 [N] labels.
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.labels.ndim != 1:
            raise ValueError(f"Split labels must be 1-D [N], got shape {self.labels.shape}.")
        if (self.images is None) == (self.paths is None):
            raise ValueError("A Split holds exactly one of `images` (decoded) or `paths` (streamed).")
        if self.images is not None:
            self.images = np.asarray(self.images)
            if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
                raise ValueError(
                    "Split images must be uint8 [N, H, W, 3], got "
                    f"{self.images.dtype} {self.images.shape}."
                )
            count = len(self.images)
        else:
            self.paths = list(self.paths)
            count = len(self.paths)
        if count != len(self.labels):
            raise ValueError(f"Split has {count} images but {len(self.labels)} labels.")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def is_labeled(self) -> bool:
        """True when every example has a class label (none is -1)."""
        return len(self.labels) > 0 and bool(np.all(self.labels >= 0))

    def take(self, indices) -> Split:
        """Returns the examples at `indices`, in that order, as a new Split.

        Args:
            indices: integer positions into this split.
        """
        indices = np.asarray(indices, dtype=np.int64)
        if self.images is not None:
            return Split(images=self.images[indices], paths=None, labels=self.labels[indices])
        return Split(images=None, paths=[self.paths[i] for i in indices], labels=self.labels[indices])


@dataclasses.dataclass
class DataSource:
    """A loaded data set: train and optional test split plus class metadata.

    Args:
        train: the training split.
        test: the test split, or None when the source has none.
        class_names: class names indexed by label; empty for unlabeled data.
        num_classes: number of classes (len(class_names) for image folders).
        skipped_files: unreadable image files that were left out while loading.
    """

    train: Split
    test: Split | None
    class_names: list[str]
    num_classes: int
    skipped_files: list[str] = dataclasses.field(default_factory=list)

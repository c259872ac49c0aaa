"""Class-incremental task splits for continual learning (`--tasks=T`).

The C classes of a data set are put in an order and cut into T tasks of C / T
classes each; task t trains on its own classes (the unlabeled stream holds
only them, NNCSL's `setting: current`), and is evaluated on every class seen
so far. NNCSL's official code takes the classes in their natural order,
`tasks = [classes[i:i + C // T] ...]` (kangzhiq/NNCSL
`src/nncsl_train.py:288-290`); `seed=None` gives exactly that, and an int
seed a fixed shuffle of it (SplitMix64 keys, so a seed names the same split on
every machine), for averaging over class orders as continual-learning
papers do.

Example:
    >>> split = TaskSplit.make(num_classes=10, tasks=5)           # [0, 1], [2, 3], ...
    >>> split.classes(1), split.seen_classes(1)
    ((2, 3), (0, 1, 2, 3))
    >>> task_train = split.unlabeled_split(source.train, task=1)  # classes 2 and 3 only
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_ssl.data.mixing import splitmix64, stream_base
from keras_ssl.data.split import Split

# Keeps the class-order stream of a seed apart from the label budget's and the sampler's.
SALT_TASK_ORDER = 0x7461736B


@dataclasses.dataclass(frozen=True)
class TaskSplit:
    """The classes of each task, in training order.

    Args:
        tasks: one tuple of class ids per task, in the order they are trained.
        num_classes: C, the classes of the data set (ids 0 .. C-1).
    """

    tasks: tuple
    num_classes: int

    def __post_init__(self):
        tasks = tuple(tuple(int(c) for c in task) for task in self.tasks)
        flat = [c for task in tasks for c in task]
        if not tasks or any(not task for task in tasks):
            raise ValueError(f"Every task needs at least one class, got {tasks}.")
        if len(set(flat)) != len(flat):
            raise ValueError(f"A class belongs to two tasks in {tasks}.")
        if min(flat) < 0 or max(flat) >= self.num_classes:
            raise ValueError(f"Task classes must be in 0..{self.num_classes - 1}, got {tasks}.")
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "num_classes", int(self.num_classes))

    @classmethod
    def make(cls, num_classes: int, tasks: int, seed: int | None = None) -> TaskSplit:
        """C / T classes per task, in the natural order (seed None) or a seeded shuffle.

        Raises:
            ValueError: when T is not a positive divisor of C.
        """
        num_classes, count = int(num_classes), int(tasks)
        if count <= 0 or num_classes <= 0 or num_classes % count:
            raise ValueError(
                f"--tasks={tasks} must divide the {num_classes} classes into equal tasks "
                f"(class-incremental splits give every task C / T classes); choose one of "
                f"{[t for t in range(1, num_classes + 1) if num_classes % t == 0]}.")
        order = class_order(num_classes, seed)
        per_task = num_classes // count
        return cls(tasks=tuple(tuple(order[i:i + per_task])
                               for i in range(0, num_classes, per_task)),
                   num_classes=num_classes)

    def __len__(self) -> int:
        return len(self.tasks)

    def classes(self, task: int) -> tuple:
        """The classes task `task` (0-based) introduces."""
        return self.tasks[self._check(task)]

    def past_classes(self, task: int) -> tuple:
        """Classes of the tasks before `task` (what distillation and the buffer keep)."""
        return tuple(c for t in self.tasks[:self._check(task)] for c in t)

    def seen_classes(self, task: int) -> tuple:
        """Classes of tasks 0..task: what evaluation after `task` covers."""
        return self.past_classes(task) + self.classes(task)

    def mask(self, classes) -> np.ndarray:
        """bool [C], True at `classes` (the form a traced step reads)."""
        result = np.zeros(self.num_classes, bool)
        result[list(classes)] = True
        return result

    def unlabeled_indices(self, split: Split, task: int) -> np.ndarray:
        """Positions in `split` of the examples of task `task`'s classes, ascending."""
        return np.flatnonzero(np.isin(split.labels, self.classes(task)))

    def unlabeled_split(self, split: Split, task: int) -> Split:
        """The training stream of task `task`: its classes' examples only."""
        return split.take(self.unlabeled_indices(split, task))

    def seen_split(self, split: Split, task: int) -> Split:
        """The examples of every class seen up to `task` (the test set after it)."""
        return split.take(np.flatnonzero(np.isin(split.labels, self.seen_classes(task))))

    def _check(self, task):
        if not 0 <= int(task) < len(self.tasks):
            raise ValueError(f"Task {task} is not one of the {len(self.tasks)} tasks (0-based).")
        return int(task)


def class_order(num_classes: int, seed: int | None = None) -> list:
    """The classes 0..C-1 in their natural order (None) or ranked by SplitMix64 keys of `seed`."""
    classes = np.arange(num_classes, dtype=np.int64)
    if seed is None:
        return classes.tolist()
    with np.errstate(over="ignore"):
        keys = splitmix64(stream_base(seed, SALT_TASK_ORDER) + classes.astype(np.uint64))
    return classes[np.argsort(keys, kind="stable")].tolist()

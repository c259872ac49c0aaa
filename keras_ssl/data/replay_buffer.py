"""The labelled replay buffer of continual semi-supervised learning (NNCSL's rule).

After each task the buffer keeps, for every class seen so far, the first
floor(size / |seen|) of its labelled examples, in the order of the label
subset (kangzhiq/NNCSL `src/utils.py:193-265`, `make_buffer_lst`). It is not
reservoir sampling: which examples stay is fixed by the subset file's order
(each class keeps a prefix of its labels, plus at most one filler).
The rule, step by step as the official code takes it:

- the new task's labelled examples are grouped by class (classes ascending
  within the task, the subset's order within a class);
- if they fit in the free space, they are all appended (no other change);
- otherwise every class, past and new, keeps its first floor(size / |seen|)
  examples (a past class from the previous buffer, a new one from the
  subset), past classes first in their buffer order;
- the slots left over (size mod |seen|, at most) are filled with one more
  example from each of the first past classes, then the first new classes:
  the last example of the class's block (for a past class, its
  floor(len(previous buffer) / |past|)-th example in the buffer; for a new
  class its last labelled example).

The official code slices the buffer and the subset in equal blocks, which
assumes every class has the same number of labels; grouping by class gives
the same lists when that holds and the meaningful ones when it does not.

Example:
    >>> tasks, buffer = TaskSplit.make(10, 5), []
    >>> for task in range(len(tasks)):
    ...     chosen = labeled_indices_for_task(buffer, subset, labels, tasks, task)
    ...     ...  # train task `task` with LabeledStream(train, b, indices=chosen)
    ...     buffer = update_buffer(buffer, 500, subset, labels, tasks, task)
"""

from __future__ import annotations

import numpy as np

from keras_ssl.data.task_splits import TaskSplit


def _by_class(indices, labels, classes):
    """{class: [indices of that class, in the given order]}, classes in the given order."""
    indices, labels = np.asarray(indices, np.int64), np.asarray(labels, np.int64)
    return {int(c): indices[labels == c].tolist() for c in classes}


def update_buffer(buffer, size: int, subset, subset_labels, split: TaskSplit, task: int) -> list:
    """The buffer after training task `task`.

    Args:
        buffer: the buffer after task - 1 (dataset indices; empty or None before task 0).
        size: the buffer's capacity (NNCSL: 500).
        subset: dataset indices of the labelled examples, in the subset's order.
        subset_labels: their classes.
        split: the `TaskSplit`.
        task: the task just trained (0-based).

    Returns:
        list of dataset indices, at most `size` of them (its order matters for
        the next update, as in the official code).
    """
    size = int(size)
    if size < 0:
        raise ValueError(f"The buffer size must be >= 0, got {size}.")
    if size == 0:
        return []
    subset_labels = np.asarray(subset_labels, np.int64)
    if len(subset_labels) != len(subset):
        raise ValueError(f"{len(subset)} subset indices but {len(subset_labels)} labels.")
    buffer = list(buffer or [])
    current = sorted(split.classes(task))
    new = _by_class(subset, subset_labels, current)
    new_list = [i for c in current for i in new[c]]
    if size - len(buffer) >= len(new_list):
        return buffer + new_list

    past = list(split.past_classes(task)) if buffer else []
    seen = len(past) + len(current)
    keep = size // seen
    kept, extras = [], []
    if past:
        # Past classes in the order of their blocks in the buffer.
        position = {c: k for k, c in reversed(list(enumerate(_labels_of(buffer, subset,
                                                                          subset_labels))))}
        past = sorted(past, key=lambda c: position.get(c, len(buffer)))
        block = len(buffer) // len(past)
        old = _by_class(buffer, _labels_of(buffer, subset, subset_labels), past)
        blocks = {c: old[c][:block] for c in past}
        for c in past:
            kept += blocks[c][:keep]
        extras += [blocks[c][-1:] for c in past]
    for c in current:
        kept += new[c][:keep]
    extras += [new[c][-1:] for c in current]
    # Fill: one more from each of the first past classes, then the first new ones.
    past_extras, new_extras = extras[:len(past)], extras[len(past):]
    for group in (past_extras, new_extras):
        missing = size - len(kept)
        for extra in group[:max(missing, 0)]:
            kept += extra
    return kept


def _labels_of(indices, subset, subset_labels):
    lookup = dict(zip(np.asarray(subset, np.int64).tolist(), np.asarray(subset_labels).tolist()))
    return np.array([lookup[i] for i in indices], np.int64)


def labeled_indices_for_task(buffer, subset, subset_labels, split: TaskSplit, task: int):
    """The labelled set of task `task`: the buffer (past classes) and the task's own labels.

    The official labelled loader of task t draws from the buffer and the
    current task's labelled examples together, class-stratified over the
    seen classes. Returns sorted dataset indices (what `LabeledStream` takes).
    """
    subset_labels = np.asarray(subset_labels, np.int64)
    own = np.asarray(subset, np.int64)[np.isin(subset_labels, split.classes(task))]
    return np.unique(np.concatenate([np.asarray(list(buffer or []), np.int64), own]))

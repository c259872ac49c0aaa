"""The replay buffer against a transcription of NNCSL's `make_buffer_lst` (src/utils.py:193-265)."""

import numpy as np
import pytest

from keras_ssl.data.replay_buffer import labeled_indices_for_task, update_buffer
from keras_ssl.data.task_splits import TaskSplit


def _official(buffer_lst, buffer_size, subset, subset_labels, tasks, task_idx):
    # The official function with its two files replaced by the two lists, and
    # a stable sort by class (np.argsort's default is not stable).
    target = tasks[task_idx]
    cls_lst = [int(l) for l in subset_labels if l in target]
    index_lst = [int(i) for i, l in zip(subset, subset_labels) if l in target]
    order = np.argsort(cls_lst, kind="stable")
    index_lst = np.array(index_lst)[order].tolist()
    num_pre = len(sum(tasks[:task_idx], []))
    num_seen = len(sum(tasks[:task_idx + 1], []))
    num_cur = len(target)
    if buffer_lst is None:
        if buffer_size >= len(index_lst):
            return index_lst
        cur = int(len(index_lst) / num_cur)
        new = int(buffer_size / num_seen)
        buffer_lst = []
        for i in range(num_seen):
            buffer_lst += index_lst[i * cur:(i + 1) * cur][:new]
        if len(buffer_lst) < buffer_size:
            diff = buffer_size - len(buffer_lst)
            for i in range(min(num_cur, diff)):
                buffer_lst += index_lst[i * cur:(i + 1) * cur][-1:]
        return buffer_lst
    if buffer_size - len(buffer_lst) >= len(index_lst):
        return buffer_lst + index_lst
    cur = int(len(index_lst) / num_cur)
    pre = int(len(buffer_lst) / num_pre)
    new = int(buffer_size / num_seen)
    temp = []
    for i in range(num_pre):
        temp += buffer_lst[i * pre:(i + 1) * pre][:new]
    for i in range(num_cur):
        temp += index_lst[i * cur:(i + 1) * cur][:new]
    if len(temp) < buffer_size:
        diff = buffer_size - len(temp)
        for i in range(min(num_pre, diff)):
            temp += buffer_lst[i * pre:(i + 1) * pre][-1:]
    if len(temp) < buffer_size:
        diff = buffer_size - len(temp)
        for i in range(min(num_cur, diff)):
            temp += index_lst[i * cur:(i + 1) * cur][-1:]
    return temp


def _subset(num_classes, per_class, seed):
    # A labelled subset in file order: shuffled dataset indices, equal per class.
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    indices = rng.choice(100 * num_classes * per_class, size=len(labels), replace=False)
    order = rng.permutation(len(labels))
    return indices[order], labels[order]


@pytest.mark.parametrize("num_classes,tasks,per_class,size", [
    (10, 5, 25, 50), (10, 5, 25, 37), (10, 5, 5, 500), (10, 5, 25, 23),
    (20, 4, 7, 33), (12, 6, 10, 40)])
def test_buffer_after_each_task_is_the_official_one(num_classes, tasks, per_class, size):
    subset, labels = _subset(num_classes, per_class, seed=num_classes + size)
    split = TaskSplit.make(num_classes, tasks)
    ours, official = [], None
    for task in range(tasks):
        ours = update_buffer(ours, size, subset, labels, split, task)
        official = _official(official, size, subset, labels,
                             [list(t) for t in split.tasks], task)
        assert ours == official, f"task {task}"
        assert len(ours) <= size


def test_contents_are_the_first_labels_of_every_seen_class():
    # CIFAR-10 shape: 5 tasks of 2 classes, 10 labels per class, buffer 20.
    subset, labels = _subset(10, 10, seed=0)
    split = TaskSplit.make(10, 5)
    lookup = dict(zip(subset.tolist(), labels.tolist()))
    buffer = []
    for task in range(5):
        buffer = update_buffer(buffer, 20, subset, labels, split, task)
        seen = split.seen_classes(task)
        keep = min(10, 20 // len(seen))
        counts = np.bincount([lookup[i] for i in buffer], minlength=10)
        assert set(np.flatnonzero(counts)) == set(seen)
        assert len(set(buffer)) == len(buffer)
        for c in seen:
            own = [i for i in subset if lookup[i] == c]  # the subset's order
            in_buffer = [i for i in buffer if lookup[i] == c]
            # Each class keeps the first `keep` of its labels; a slot left over
            # takes one more, the last of the class's previous block (not the
            # next label: the official fill reads `block[-1:]`).
            assert in_buffer[:keep] == own[:keep]
            assert keep <= len(in_buffer) <= keep + 1
    # After the last task: 20 // 10 = 2 per class, no slot left over.
    assert len(buffer) == 20


def test_the_labeled_set_of_a_task_is_the_buffer_and_its_own_labels():
    subset, labels = _subset(4, 3, seed=1)
    split = TaskSplit.make(4, 2)
    buffer = update_buffer([], 4, subset, labels, split, 0)
    chosen = labeled_indices_for_task(buffer, subset, labels, split, 1)
    lookup = dict(zip(subset.tolist(), labels.tolist()))
    assert sorted(chosen.tolist()) == chosen.tolist()
    assert set(chosen.tolist()) == set(buffer) | {i for i in subset.tolist() if lookup[i] >= 2}
    assert update_buffer([1, 2], 0, subset, labels, split, 1) == []

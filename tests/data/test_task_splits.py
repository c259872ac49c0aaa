"""Class-incremental task splits: the official order, seeded orders, the restricted streams."""

import numpy as np
import pytest

from keras_ssl.data.split import Split
from keras_ssl.data.task_splits import TaskSplit, class_order


def test_no_seed_is_the_official_natural_order():
    # nncsl_train.py:288-290: tasks = [classes[i:i + C // T] ...].
    split = TaskSplit.make(num_classes=10, tasks=5)
    assert split.tasks == ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
    assert split.classes(2) == (4, 5)
    assert split.past_classes(2) == (0, 1, 2, 3)
    assert split.seen_classes(2) == (0, 1, 2, 3, 4, 5)
    assert split.past_classes(0) == ()
    np.testing.assert_array_equal(split.mask(split.seen_classes(1)),
                                  [1, 1, 1, 1, 0, 0, 0, 0, 0, 0])


def test_a_seed_gives_a_fixed_partition_of_the_classes():
    first = TaskSplit.make(num_classes=100, tasks=10, seed=3)
    again = TaskSplit.make(num_classes=100, tasks=10, seed=3)
    other = TaskSplit.make(num_classes=100, tasks=10, seed=4)
    assert first == again
    assert first.tasks != other.tasks
    assert all(len(task) == 10 for task in first.tasks)
    assert sorted(c for task in first.tasks for c in task) == list(range(100))
    assert class_order(100, 3) != list(range(100))


@pytest.mark.parametrize("tasks", [3, 0, 11])
def test_tasks_must_divide_the_classes(tasks):
    with pytest.raises(ValueError, match=f"--tasks={tasks} must divide the 10 classes"):
        TaskSplit.make(num_classes=10, tasks=tasks)


def test_bad_explicit_tasks_are_refused():
    with pytest.raises(ValueError, match="two tasks"):
        TaskSplit(tasks=((0, 1), (1, 2)), num_classes=3)
    with pytest.raises(ValueError, match="0..2"):
        TaskSplit(tasks=((0, 3),), num_classes=3)
    with pytest.raises(ValueError, match="not one of the 2 tasks"):
        TaskSplit.make(4, 2).classes(2)


def test_streams_hold_the_task_classes_and_the_seen_classes():
    labels = np.array([3, 0, 1, 2, 3, 1, 0, 2, 2])
    data = Split(images=np.arange(9, dtype=np.uint8)[:, None, None, None].repeat(3, -1)
                 .reshape(9, 1, 1, 3), paths=None, labels=labels)
    split = TaskSplit.make(num_classes=4, tasks=2, seed=None)
    np.testing.assert_array_equal(split.unlabeled_indices(data, 1), [0, 3, 4, 7, 8])
    task = split.unlabeled_split(data, 1)
    assert set(task.labels.tolist()) == {2, 3}
    np.testing.assert_array_equal(task.images[:, 0, 0, 0], [0, 3, 4, 7, 8])
    assert set(split.seen_split(data, 0).labels.tolist()) == {0, 1}
    assert len(split.seen_split(data, 1)) == 9

"""Label budgets, the class-balanced sampler and the labeled stream of train_dataset."""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.data import (
    ClassBalancedSampler,
    LabeledStream,
    Split,
    distributed_train_dataset,
    labeled_indices,
    labeled_subset,
    read_label_indices,
    train_dataset,
    write_label_indices,
)
from keras_ssl.data.image_files import list_image_folder
from keras_ssl.data.mixing import splitmix64, splitmix64_tf
from keras_ssl.data.subsets import per_class_subset
from keras_ssl.methods.contract import Batch, LabeledBatch

CIFAR10 = "/work/shared/data/cifar10"


def _numbered_split(labels, size=4):
    """In-memory split whose image i is filled with the value i (so views name their example)."""
    labels = np.asarray(labels)
    count = len(labels)
    assert count <= 256
    images = np.broadcast_to(np.arange(count, dtype=np.uint8)[:, None, None, None], [count, size, size, 3])
    return Split(images=np.ascontiguousarray(images), paths=None, labels=labels)


def _path_split(labels):
    labels = np.asarray(labels)
    return Split(images=None, paths=[f"{i}.jpg" for i in range(len(labels))], labels=labels)


def _seed_view_fn(images, seed):
    """Views: the images as float, and the batch's augmentation seed repeated per row."""
    batch = tf.shape(images)[0]
    return tf.cast(images, tf.float32) / 255.0, tf.tile(seed[None], [batch, 1])


def _two_view_fn(images, seed):
    """A labeled view_fn distinct from the unlabeled one: two views, the second inverted."""
    image = tf.cast(images, tf.float32) / 255.0
    return image, 1.0 - image


def _batches(dataset):
    return list(dataset.as_numpy_iterator())


def _imbalanced_labels():
    """5 classes of 30, 24, 18, 40 and 12 examples, shuffled, plus 6 unlabeled (-1) rows."""
    labels = np.concatenate([np.repeat(np.arange(5), [30, 24, 18, 40, 12]), np.full(6, -1)])
    return np.random.default_rng(0).permutation(labels)


# ---------------------------------------------------------------------------- label budgets


def test_labels_per_class_counts_seeds_and_nesting():
    split = _path_split(_imbalanced_labels())
    chosen = labeled_indices(split, labels_per_class=4, seed=0)
    assert chosen.dtype == np.int64 and np.all(np.diff(chosen) > 0)  # sorted, no repeats
    np.testing.assert_array_equal(np.bincount(split.labels[chosen]), [4] * 5)  # never a -1 row
    np.testing.assert_array_equal(chosen, labeled_indices(split, labels_per_class=4, seed=0))
    other = labeled_indices(split, labels_per_class=4, seed=1)
    assert not np.array_equal(chosen, other)
    np.testing.assert_array_equal(np.bincount(split.labels[other]), [4] * 5)
    # Keys are per example, so a seed's small budget lies inside its larger one.
    assert set(chosen) <= set(labeled_indices(split, labels_per_class=10, seed=0))
    # Not simply the first examples of each class (per_class_subset's rule).
    first = np.concatenate([np.flatnonzero(split.labels == c)[:4] for c in range(5)])
    assert not np.array_equal(chosen, np.sort(first))

    subset = labeled_subset(split, labels_per_class=4, seed=0)
    assert subset.paths == [f"{i}.jpg" for i in chosen]
    np.testing.assert_array_equal(subset.labels, split.labels[chosen])


def test_fraction_is_class_balanced_with_a_seeded_remainder():
    split = _path_split(_imbalanced_labels())  # 124 labeled examples
    chosen = labeled_indices(split, fraction=0.1, seed=0)
    counts = np.bincount(split.labels[chosen])
    assert counts.sum() == 12  # round(0.1 * 124), the 6 unlabeled rows not counted
    assert sorted(counts) == [2, 2, 2, 3, 3]  # 12 // 5 each, 12 % 5 classes get one more
    np.testing.assert_array_equal(chosen, labeled_indices(split, fraction=0.1, seed=0))
    extras = {tuple(np.bincount(split.labels[labeled_indices(split, fraction=0.1, seed=s)]))
              for s in range(8)}
    assert len(extras) > 1  # the classes that get the remainder depend on the seed
    balanced = _path_split(np.arange(200) % 10)
    quarter = labeled_indices(balanced, fraction=0.25)
    np.testing.assert_array_equal(np.bincount(balanced.labels[quarter]), [5] * 10)


def test_budget_errors():
    split = _path_split(_imbalanced_labels())
    message = r"labels_per_class=13 asks for 13 labels of class 4, which has only 12"
    with pytest.raises(ValueError, match=message):
        labeled_indices(split, labels_per_class=13)
    with pytest.raises(ValueError, match=r"fraction=0.6 asks for 1[45] labels of class 4, which has only 12"):
        labeled_indices(split, fraction=0.6)
    with pytest.raises(ValueError, match="fewer than one for each of the 5 classes"):
        labeled_indices(split, fraction=0.01)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        labeled_indices(split, fraction=1.5)
    with pytest.raises(ValueError, match="exactly one label budget"):
        labeled_indices(split)
    with pytest.raises(ValueError, match="exactly one label budget"):
        labeled_indices(split, labels_per_class=2, fraction=0.1)
    with pytest.raises(ValueError, match="positive integer"):
        labeled_indices(split, labels_per_class=0)
    with pytest.raises(ValueError, match="every example of the split is unlabeled"):
        labeled_indices(_path_split([-1, -1]), labels_per_class=1)
    with pytest.raises(ValueError, match=r"Label index 130 is out of range: the split has 130 examples"):
        labeled_indices(split, indices=[0, 130])
    with pytest.raises(ValueError, match="Label index -1 is out of range"):
        labeled_indices(split, indices=[-1, 3])
    with pytest.raises(ValueError, match="Label index 3 is listed more than once"):
        labeled_indices(split, indices=[3, 5, 3])
    unlabeled_row = int(np.flatnonzero(split.labels < 0)[0])
    with pytest.raises(ValueError, match=f"Label index {unlabeled_row} names an unlabeled"):
        labeled_indices(split, indices=[unlabeled_row])


def test_index_file_round_trip(tmp_path):
    split = _path_split(_imbalanced_labels())
    chosen = labeled_indices(split, labels_per_class=3, seed=7)
    shuffled = np.random.default_rng(1).permutation(chosen)
    path = tmp_path / "labels.txt"
    write_label_indices(path, shuffled, header="15 labels\nseed 7")
    text = path.read_text()
    assert text.startswith("# 15 labels\n# seed 7\n") and text.count("\n") == 17
    np.testing.assert_array_equal(read_label_indices(path), shuffled)  # file order is kept
    np.testing.assert_array_equal(read_label_indices(str(path), num_examples=len(split)), shuffled)
    # As a budget, the file gives the same set (sorted) as the draw that wrote it.
    np.testing.assert_array_equal(labeled_indices(split, indices=str(path)), chosen)
    np.testing.assert_array_equal(labeled_subset(split, indices=path).labels, split.labels[chosen])
    stream = LabeledStream.from_budget(split, batch_size=5, indices=path)
    np.testing.assert_array_equal(stream.indices, chosen)


@pytest.mark.parametrize(
    "content, message",
    [
        ("3\n4\nfive\n", r"line 3: 'five' is not a dataset index"),
        ("3\n\n-4\n", r"line 3: '-4' is not a dataset index"),
        ("# header\n2.5\n", r"line 2: '2.5' is not a dataset index"),
        ("1 2\n", r"line 1: '1 2' is not a dataset index"),
        ("1\n2\n1\n", r"line 3: index 1 repeats line 1"),
        ("1\n200\n", r"line 2: index 200 is out of range for a split of 130 examples"),
        ("# only a comment\n\n", "lists no indices"),
    ],
)
def test_index_file_errors_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad_labels.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        read_label_indices(path, num_examples=130)
    assert "bad_labels.txt" in str(error.value)
    with pytest.raises(ValueError, match=message):  # the same message through a budget
        labeled_indices(_path_split(_imbalanced_labels()), indices=str(path))


def test_index_file_missing_and_bad_writes(tmp_path):
    with pytest.raises(ValueError, match="missing.txt' does not exist"):
        read_label_indices(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="non-negative"):
        write_label_indices(tmp_path / "out.txt", [1, -2])
    with pytest.raises(ValueError, match="more than once"):
        write_label_indices(tmp_path / "out.txt", [1, 2, 1])


def test_splitmix64_numpy_and_tensorflow_agree():
    values = np.array([0, 1, 2, 12345, 2**32 + 7, 2**63, 2**64 - 1], dtype=np.uint64)
    np.testing.assert_array_equal(splitmix64(values), splitmix64_tf(tf.constant(values)).numpy())
    # SplitMix64's published first output for state 0 (one golden-ratio step, then mixing).
    assert int(splitmix64(np.array([0], np.uint64))[0]) == 0xE220A8397B1DCDAF


# ---------------------------------------------------------------------------- the sampler


@pytest.mark.parametrize("batch_size", [10, 7, 3, 12])
def test_sampler_batches_are_class_balanced(batch_size):
    labels = np.repeat(np.arange(5), [3, 4, 6, 2, 9])
    sampler = ClassBalancedSampler(labels, batch_size=batch_size, seed=3)
    steps = 40
    rows = np.stack([sampler.rows(t).numpy() for t in range(steps)])
    counts = np.stack([np.bincount(labels[r], minlength=5) for r in rows])
    # Each batch: b // C of every class, and b % C classes with one more.
    low = batch_size // 5
    assert np.all((counts == low) | (counts == low + 1))
    assert np.all((counts == low + 1).sum(axis=1) == batch_size % 5)
    # Over any 5 consecutive steps every class gets exactly b rows.
    for t in range(steps - 4):
        np.testing.assert_array_equal(counts[t:t + 5].sum(axis=0), [batch_size] * 5)
    # Each class is walked in passes: every n_c consecutive draws are a permutation of it.
    stream = rows.reshape(-1)
    for c in range(5):
        members = np.flatnonzero(labels == c)
        draws = stream[np.isin(stream, members)]
        passes = draws[: len(draws) // len(members) * len(members)].reshape(-1, len(members))
        assert len(passes) >= 2
        for one_pass in passes:
            np.testing.assert_array_equal(np.sort(one_pass), members)
        assert len({tuple(p) for p in passes}) > 1  # a new order each pass


def test_sampler_is_a_function_of_seed_and_step():
    labels = np.arange(60) % 4
    values = 1000 + np.arange(60)
    sampler = ClassBalancedSampler(labels, batch_size=8, seed=5, values=values)
    again = ClassBalancedSampler(labels, batch_size=8, seed=5, values=values)
    for t in (0, 3, 1234567):
        np.testing.assert_array_equal(sampler.rows(t).numpy(), again.rows(t).numpy())
        # Any slice of a batch is the same rows as in the whole batch (how replicas share it).
        np.testing.assert_array_equal(sampler.rows(t, start=4, size=4).numpy(), sampler.rows(t).numpy()[4:])
    assert np.all(sampler.rows(9).numpy() >= 1000)  # returns `values`
    other = ClassBalancedSampler(labels, batch_size=8, seed=6, values=values)
    first = np.concatenate([sampler.rows(t).numpy() for t in range(10)])
    assert not np.array_equal(first, np.concatenate([other.rows(t).numpy() for t in range(10)]))
    # Graph mode (inside tf.data) gives what eager mode gives.
    graph = tf.data.Dataset.range(10).map(sampler.rows)
    np.testing.assert_array_equal(np.concatenate(_batches(graph)), first)


def test_sampler_rejects_bad_input():
    with pytest.raises(ValueError, match="unlabeled"):
        ClassBalancedSampler([0, -1, 1], batch_size=2, seed=0)
    with pytest.raises(ValueError, match="positive integer"):
        ClassBalancedSampler([0, 1], batch_size=0, seed=0)


# ---------------------------------------------------------------------------- the stream


def test_labeled_stream_elements():
    labels = np.arange(120) % 6
    split = _numbered_split(labels)
    stream = LabeledStream.from_budget(split, batch_size=12, labels_per_class=3, seed=2, view_fn=_two_view_fn)
    dataset = train_dataset(split, batch_size=16, view_fn=_seed_view_fn, seed=2, epochs=2, labeled=stream)
    assert dataset.cardinality().numpy() == 2 * (120 // 16)  # the unlabeled split sets the epoch
    batches = _batches(dataset)
    for element in batches:
        labeled = element["labeled"]
        assert set(labeled) == {"views", "label", "index"}
        first, second = labeled["views"]  # the labeled stream's own view_fn
        assert first.shape == (12, 4, 4, 3) and first.dtype == np.float32
        np.testing.assert_allclose(second, 1.0 - first)
        assert labeled["label"].dtype == np.int64 and labeled["index"].dtype == np.int64
        # The index is the dataset index, matching its image and its label.
        np.testing.assert_allclose(first[:, 0, 0, 0] * 255, labeled["index"], atol=1e-4)
        np.testing.assert_array_equal(labeled["label"], labels[labeled["index"]])
        assert set(labeled["index"]) <= set(stream.indices)
        np.testing.assert_array_equal(np.bincount(labeled["label"], minlength=6), [2] * 6)
        # The unlabeled part is unchanged, labels included.
        np.testing.assert_array_equal(element["label"], labels[element["index"]])
    # Without a labeled stream the unlabeled elements are exactly as before.
    plain = _batches(train_dataset(split, batch_size=16, view_fn=_seed_view_fn, seed=2, epochs=2))
    for element, same in zip(batches, plain):
        np.testing.assert_array_equal(element["index"], same["index"])
        np.testing.assert_array_equal(element["views"][1], same["views"][1])
        assert "labeled" not in same
    # Labeled batch t is sampler batch t, t counted across epochs.
    sampler = ClassBalancedSampler(labels[stream.indices], 12, seed=2, values=stream.indices)
    for t, element in enumerate(batches):
        np.testing.assert_array_equal(element["labeled"]["index"], sampler.rows(t).numpy())


def test_labeled_views_default_to_the_unlabeled_view_fn_with_their_own_seeds():
    split = _numbered_split(np.arange(48) % 4)
    stream = LabeledStream(split, batch_size=4, indices=np.arange(0, 48, 3))
    dataset = train_dataset(split, batch_size=8, view_fn=_seed_view_fn, seed=1, epochs=2, labeled=stream)
    batches = _batches(dataset)
    unlabeled_seeds, labeled_seeds = set(), set()
    for number, element in enumerate(batches):
        images, seeds = element["labeled"]["views"]  # two views, like the unlabeled stream
        assert len(np.unique(seeds, axis=0)) == 1
        key, batch_number = seeds[0]
        assert batch_number == -1 - number % 6  # -1 - (batch number within the epoch)
        labeled_seeds.add((key, batch_number))
        unlabeled_seeds.add(tuple(element["views"][1][0]))
    assert len(labeled_seeds) == 12 and not labeled_seeds & unlabeled_seeds
    assert batches[0]["labeled"]["views"][1][0, 0] != batches[0]["views"][1][0, 0]  # own epoch key
    assert batches[0]["labeled"]["views"][1][0, 0] != batches[6]["labeled"]["views"][1][0, 0]  # new per epoch


def test_shared_and_separate_readers_give_the_same_stream():
    labels = np.arange(64) % 4
    split = _numbered_split(labels)
    chosen = labeled_indices(split, labels_per_class=5, seed=0)
    stream = LabeledStream(split, batch_size=6, indices=chosen)
    shared = _batches(train_dataset(split, batch_size=8, seed=0, epochs=1, labeled=stream))
    # Another split object: the labeled stream reads its own copy of the 20 labeled images.
    copy = split.take(np.arange(64))
    separate = _batches(train_dataset(copy, batch_size=8, seed=0, epochs=1, labeled=stream))
    # A subset on its own: the index is then the position in the subset.
    subset_stream = LabeledStream(labeled_subset(split, indices=chosen), batch_size=6)
    subset = _batches(train_dataset(split, batch_size=8, seed=0, epochs=1, labeled=subset_stream))
    for a, b, c in zip(shared, separate, subset):
        np.testing.assert_array_equal(a["labeled"]["index"], b["labeled"]["index"])
        np.testing.assert_array_equal(a["labeled"]["views"][0], b["labeled"]["views"][0])
        np.testing.assert_array_equal(chosen[c["labeled"]["index"]], a["labeled"]["index"])
        np.testing.assert_array_equal(c["labeled"]["views"][0], a["labeled"]["views"][0])


def test_resuming_replays_the_labeled_stream():
    split = _numbered_split(np.arange(50) % 5)
    stream = LabeledStream.from_budget(split, batch_size=7, labels_per_class=2, seed=4)

    def run(start_epoch, epochs=4):
        dataset = train_dataset(split, batch_size=8, view_fn=_seed_view_fn, seed=4, start_epoch=start_epoch,
                                epochs=epochs, labeled=stream)
        return _batches(dataset)

    full, resumed = run(0), run(2)
    steps = 50 // 8
    assert len(full) == 4 * steps and len(resumed) == 2 * steps
    for a, b in zip(full[2 * steps:], resumed):
        np.testing.assert_array_equal(a["index"], b["index"])
        np.testing.assert_array_equal(a["views"][1], b["views"][1])
        for key in ("index", "label"):
            np.testing.assert_array_equal(a["labeled"][key], b["labeled"][key])
        for view, same in zip(a["labeled"]["views"], b["labeled"]["views"]):
            np.testing.assert_array_equal(view, same)
    # Forever streams resume the same way.
    forever = train_dataset(split, batch_size=8, view_fn=_seed_view_fn, seed=4, start_epoch=3, labeled=stream)
    for a, b in zip(full[3 * steps:], _batches(forever.take(steps))):
        np.testing.assert_array_equal(a["labeled"]["index"], b["labeled"]["index"])
        np.testing.assert_array_equal(a["labeled"]["views"][1], b["labeled"]["views"][1])
    # Another seed draws other labeled batches from the same budget.
    other = _batches(train_dataset(split, batch_size=8, seed=5, epochs=1, labeled=stream))
    assert not np.array_equal(np.concatenate([e["labeled"]["index"] for e in other]),
                              np.concatenate([e["labeled"]["index"] for e in full[:steps]]))


def test_two_input_pipelines_share_each_global_labeled_batch():
    split = _numbered_split(np.arange(64) % 4)
    stream = LabeledStream.from_budget(split, batch_size=6, labels_per_class=4, seed=3)
    single = _batches(
        train_dataset(split, batch_size=8, view_fn=_seed_view_fn, seed=3, epochs=2, labeled=stream)
    )
    shards = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=2)
        shards.append(_batches(train_dataset(split, batch_size=8, view_fn=_seed_view_fn, seed=3, epochs=2,
                                             input_context=context, labeled=stream)))
    assert len(shards[0]) == len(shards[1]) == len(single) == 16
    for step, whole in enumerate(single):
        first, second = shards[0][step]["labeled"], shards[1][step]["labeled"]
        assert first["index"].shape == (3,)  # 6 labeled rows / 2 replicas
        for key in ("index", "label"):
            np.testing.assert_array_equal(np.concatenate([first[key], second[key]]), whole["labeled"][key])
        np.testing.assert_array_equal(np.concatenate([first["views"][0], second["views"][0]]),
                                      whole["labeled"]["views"][0])
        # Each replica's labeled batch has its own seed: -1 - (2 * step in epoch + replica).
        number = 2 * (step % 8)
        assert first["views"][1][0, 1] == -1 - number and second["views"][1][0, 1] == -2 - number
        # Rows alternate between classes, so each replica's share is balanced too.
        assert len(set(first["label"])) == 3
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=0, num_replicas_in_sync=2)
    odd = LabeledStream(split, batch_size=5)
    with pytest.raises(ValueError, match=r"labeled batch_size=5 does not divide by the 2 replicas"):
        train_dataset(split, batch_size=8, seed=0, input_context=context, labeled=odd)


def _two_cpu_strategy():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) < 2:
        pytest.skip("needs 2 logical CPUs (set before TensorFlow initialised its devices)")
    return tf.distribute.MirroredStrategy(devices[:2])


def test_distributed_labeled_stream_matches_one_replica():
    strategy = _two_cpu_strategy()
    split = _numbered_split(np.arange(40) % 5)
    stream = LabeledStream.from_budget(split, batch_size=10, labels_per_class=3, seed=8)
    single = _batches(train_dataset(split, batch_size=8, seed=8, epochs=1, labeled=stream, hide_labels=True))
    distributed = distributed_train_dataset(strategy, split, global_batch_size=8, seed=8, epochs=1,
                                            labeled=stream, hide_labels=True)
    steps = 0
    for step, element in enumerate(distributed):
        def local(tensor):
            return [t.numpy() for t in strategy.experimental_local_results(tensor)]

        indices = local(element["labeled"]["index"])
        assert [len(i) for i in indices] == [5, 5]
        np.testing.assert_array_equal(np.concatenate(indices), single[step]["labeled"]["index"])
        np.testing.assert_array_equal(np.concatenate(local(element["labeled"]["label"])),
                                      single[step]["labeled"]["label"])
        np.testing.assert_array_equal(np.concatenate(local(element["label"])), [-1] * 8)
        steps += 1
    assert steps == 5
    with pytest.raises(ValueError, match=r"labeled batch_size=7 does not divide by the 2 replicas"):
        distributed_train_dataset(strategy, split, global_batch_size=8, seed=0,
                                  labeled=LabeledStream(split, batch_size=7))


def test_hide_labels():
    labels = np.arange(32) % 4
    split = _numbered_split(labels)
    stream = LabeledStream.from_budget(split, batch_size=4, labels_per_class=2)
    hidden = _batches(train_dataset(split, batch_size=8, seed=0, epochs=1, labeled=stream, hide_labels=True))
    shown = _batches(train_dataset(split, batch_size=8, seed=0, epochs=1, labeled=stream))
    for a, b in zip(hidden, shown):
        assert a["label"].dtype == np.int64
        np.testing.assert_array_equal(a["label"], [-1] * 8)
        np.testing.assert_array_equal(b["label"], labels[b["index"]])
        np.testing.assert_array_equal(a["index"], b["index"])
        np.testing.assert_array_equal(a["labeled"]["label"], labels[a["labeled"]["index"]])  # still labeled
    # Also without a labeled stream (an unsupervised run that must not see labels).
    alone = _batches(train_dataset(split, batch_size=8, seed=0, epochs=1, hide_labels=True))
    assert all(np.all(e["label"] == -1) for e in alone)


def test_labeled_stream_validation():
    split = _numbered_split([0, 1, -1, 0, 1, -1])
    np.testing.assert_array_equal(LabeledStream(split, batch_size=2).indices, [0, 1, 3, 4])  # labeled rows
    np.testing.assert_array_equal(LabeledStream(split, batch_size=2, indices=[4, 0]).indices, [0, 4])
    with pytest.raises(ValueError, match="index 2 names an unlabeled"):
        LabeledStream(split, batch_size=2, indices=[0, 2])
    with pytest.raises(ValueError, match="out of range"):
        LabeledStream(split, batch_size=2, indices=[0, 6])
    with pytest.raises(ValueError, match="positive integer"):
        LabeledStream(split, batch_size=0)
    with pytest.raises(ValueError, match="no labeled examples"):
        LabeledStream(_numbered_split([-1, -1]), batch_size=2)
    with pytest.raises(TypeError, match="LabeledStream"):
        train_dataset(split, batch_size=2, seed=0, labeled={"batch_size": 2})


def test_batch_from_element_carries_the_labeled_stream():
    split = _numbered_split(np.arange(24) % 3)
    stream = LabeledStream.from_budget(split, batch_size=6, labels_per_class=2, view_fn=_two_view_fn)
    dataset = train_dataset(split, batch_size=8, view_fn=_seed_view_fn, seed=0, epochs=1, labeled=stream,
                            hide_labels=True)
    element = next(iter(dataset))
    batch = Batch.from_element(element)
    assert isinstance(batch.labeled, LabeledBatch)
    assert len(batch.views) == 2 and len(batch.labeled.views) == 2
    assert batch.labeled.views[0].shape == (6, 4, 4, 3)
    assert batch.labeled.label.dtype == tf.int64 and batch.labeled.index.dtype == tf.int64
    np.testing.assert_array_equal(batch.labeled.label.numpy(), element["labeled"]["label"].numpy())
    np.testing.assert_array_equal(batch.labeled.index.numpy(), element["labeled"]["index"].numpy())
    assert not bool(batch.has_labels)  # the unlabeled stream's labels are hidden


@pytest.mark.skipif(not os.path.isdir(os.path.join(CIFAR10, "train")), reason="needs the CIFAR-10 folder")
def test_cifar10_folder_budget_and_streamed_labeled_batches():
    paths, labels, names = list_image_folder(os.path.join(CIFAR10, "train"))  # lists, never writes
    train = Split(images=None, paths=paths, labels=labels)
    assert len(train) == 50000 and len(names) == 10
    chosen = labeled_indices(train, labels_per_class=4, seed=0)  # the 40-label setting
    np.testing.assert_array_equal(np.bincount(train.labels[chosen]), [4] * 10)
    np.testing.assert_array_equal(chosen, labeled_indices(train, labels_per_class=4, seed=0))
    assert not np.array_equal(chosen, labeled_indices(train, labels_per_class=4, seed=1))
    # A small unlabeled split (3 files per class) beside the 40 labels of the full split, all
    # decoded from JPEG files by the pipeline.
    unlabeled = per_class_subset(train, per_class=3)
    stream = LabeledStream(train, batch_size=10, indices=chosen)
    dataset = train_dataset(unlabeled, batch_size=10, seed=0, epochs=2, image_size=32, labeled=stream,
                            hide_labels=True)
    batches = _batches(dataset)
    assert len(batches) == 6
    seen = []
    for element in batches:
        labeled = element["labeled"]
        image = labeled["views"][0]
        assert image.shape == (10, 32, 32, 3) and 0.0 <= image.min() and image.max() <= 1.0
        np.testing.assert_array_equal(np.sort(labeled["label"]), np.arange(10))  # one per class
        np.testing.assert_array_equal(labeled["label"], train.labels[labeled["index"]])
        assert np.all(element["label"] == -1)
        seen.append(labeled["index"])
    # 4 per class, one per step: after 4 steps every one of the 40 labels was seen once.
    np.testing.assert_array_equal(np.sort(np.concatenate(seen[:4])), chosen)
    # The pixels are those of the named files.
    first = tf.io.decode_jpeg(tf.io.read_file(train.paths[batches[0]["labeled"]["index"][0]])).numpy()
    np.testing.assert_allclose(batches[0]["labeled"]["views"][0][0] * 255, first, atol=1e-3)

"""The labeled stream beside train_dataset's unlabeled one: elements, resume, replicas."""

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
    train_dataset,
)
from keras_ssl.data.image_files import list_image_folder
from keras_ssl.data.subsets import per_class_subset
from keras_ssl.methods.contract import Batch, LabeledBatch
from tests.data.labeled_splits import CIFAR10, as_batches, numbered_split, seed_view_fn, two_view_fn

# ---------------------------------------------------------------------------- the stream


def test_labeled_stream_elements():
    labels = np.arange(120) % 6
    split = numbered_split(labels)
    stream = LabeledStream.from_budget(split, batch_size=12, labels_per_class=3, seed=2, view_fn=two_view_fn)
    dataset = train_dataset(split, batch_size=16, view_fn=seed_view_fn, seed=2, epochs=2, labeled=stream)
    assert dataset.cardinality().numpy() == 2 * (120 // 16)  # the unlabeled split sets the epoch
    batches = as_batches(dataset)
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
    plain = as_batches(train_dataset(split, batch_size=16, view_fn=seed_view_fn, seed=2, epochs=2))
    for element, same in zip(batches, plain):
        np.testing.assert_array_equal(element["index"], same["index"])
        np.testing.assert_array_equal(element["views"][1], same["views"][1])
        assert "labeled" not in same
    # Labeled batch t is sampler batch t, t counted across epochs.
    sampler = ClassBalancedSampler(labels[stream.indices], 12, seed=2, values=stream.indices)
    for t, element in enumerate(batches):
        np.testing.assert_array_equal(element["labeled"]["index"], sampler.rows(t).numpy())


def test_labeled_views_default_to_the_unlabeled_view_fn_with_their_own_seeds():
    split = numbered_split(np.arange(48) % 4)
    stream = LabeledStream(split, batch_size=4, indices=np.arange(0, 48, 3))
    dataset = train_dataset(split, batch_size=8, view_fn=seed_view_fn, seed=1, epochs=2, labeled=stream)
    batches = as_batches(dataset)
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
    split = numbered_split(labels)
    chosen = labeled_indices(split, labels_per_class=5, seed=0)
    stream = LabeledStream(split, batch_size=6, indices=chosen)
    shared = as_batches(train_dataset(split, batch_size=8, seed=0, epochs=1, labeled=stream))
    # Another split object: the labeled stream reads its own copy of the 20 labeled images.
    copy = split.take(np.arange(64))
    separate = as_batches(train_dataset(copy, batch_size=8, seed=0, epochs=1, labeled=stream))
    # A subset on its own: the index is then the position in the subset.
    subset_stream = LabeledStream(labeled_subset(split, indices=chosen), batch_size=6)
    subset = as_batches(train_dataset(split, batch_size=8, seed=0, epochs=1, labeled=subset_stream))
    for a, b, c in zip(shared, separate, subset):
        np.testing.assert_array_equal(a["labeled"]["index"], b["labeled"]["index"])
        np.testing.assert_array_equal(a["labeled"]["views"][0], b["labeled"]["views"][0])
        np.testing.assert_array_equal(chosen[c["labeled"]["index"]], a["labeled"]["index"])
        np.testing.assert_array_equal(c["labeled"]["views"][0], a["labeled"]["views"][0])


def test_resuming_replays_the_labeled_stream():
    split = numbered_split(np.arange(50) % 5)
    stream = LabeledStream.from_budget(split, batch_size=7, labels_per_class=2, seed=4)

    def run(start_epoch, epochs=4):
        dataset = train_dataset(split, batch_size=8, view_fn=seed_view_fn, seed=4, start_epoch=start_epoch,
                                epochs=epochs, labeled=stream)
        return as_batches(dataset)

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
    forever = train_dataset(split, batch_size=8, view_fn=seed_view_fn, seed=4, start_epoch=3, labeled=stream)
    for a, b in zip(full[3 * steps:], as_batches(forever.take(steps))):
        np.testing.assert_array_equal(a["labeled"]["index"], b["labeled"]["index"])
        np.testing.assert_array_equal(a["labeled"]["views"][1], b["labeled"]["views"][1])
    # Another seed draws other labeled batches from the same budget.
    other = as_batches(train_dataset(split, batch_size=8, seed=5, epochs=1, labeled=stream))
    assert not np.array_equal(np.concatenate([e["labeled"]["index"] for e in other]),
                              np.concatenate([e["labeled"]["index"] for e in full[:steps]]))


def test_two_input_pipelines_share_each_global_labeled_batch():
    split = numbered_split(np.arange(64) % 4)
    stream = LabeledStream.from_budget(split, batch_size=6, labels_per_class=4, seed=3)
    single = as_batches(
        train_dataset(split, batch_size=8, view_fn=seed_view_fn, seed=3, epochs=2, labeled=stream)
    )
    shards = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=2)
        shards.append(as_batches(train_dataset(split, batch_size=8, view_fn=seed_view_fn, seed=3, epochs=2,
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
    split = numbered_split(np.arange(40) % 5)
    stream = LabeledStream.from_budget(split, batch_size=10, labels_per_class=3, seed=8)
    single = as_batches(train_dataset(split, batch_size=8, seed=8, epochs=1, labeled=stream, hide_labels=True))
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
    split = numbered_split(labels)
    stream = LabeledStream.from_budget(split, batch_size=4, labels_per_class=2)
    hidden = as_batches(train_dataset(split, batch_size=8, seed=0, epochs=1, labeled=stream, hide_labels=True))
    shown = as_batches(train_dataset(split, batch_size=8, seed=0, epochs=1, labeled=stream))
    for a, b in zip(hidden, shown):
        assert a["label"].dtype == np.int64
        np.testing.assert_array_equal(a["label"], [-1] * 8)
        np.testing.assert_array_equal(b["label"], labels[b["index"]])
        np.testing.assert_array_equal(a["index"], b["index"])
        np.testing.assert_array_equal(a["labeled"]["label"], labels[a["labeled"]["index"]])  # still labeled
    # Also without a labeled stream (an unsupervised run that must not see labels).
    alone = as_batches(train_dataset(split, batch_size=8, seed=0, epochs=1, hide_labels=True))
    assert all(np.all(e["label"] == -1) for e in alone)


def test_labeled_stream_validation():
    split = numbered_split([0, 1, -1, 0, 1, -1])
    np.testing.assert_array_equal(LabeledStream(split, batch_size=2).indices, [0, 1, 3, 4])  # labeled rows
    np.testing.assert_array_equal(LabeledStream(split, batch_size=2, indices=[4, 0]).indices, [0, 4])
    with pytest.raises(ValueError, match="index 2 names an unlabeled"):
        LabeledStream(split, batch_size=2, indices=[0, 2])
    with pytest.raises(ValueError, match="out of range"):
        LabeledStream(split, batch_size=2, indices=[0, 6])
    with pytest.raises(ValueError, match="positive integer"):
        LabeledStream(split, batch_size=0)
    with pytest.raises(ValueError, match="no labeled examples"):
        LabeledStream(numbered_split([-1, -1]), batch_size=2)
    with pytest.raises(TypeError, match="LabeledStream"):
        train_dataset(split, batch_size=2, seed=0, labeled={"batch_size": 2})


def test_batch_from_element_carries_the_labeled_stream():
    split = numbered_split(np.arange(24) % 3)
    stream = LabeledStream.from_budget(split, batch_size=6, labels_per_class=2, view_fn=two_view_fn)
    dataset = train_dataset(split, batch_size=8, view_fn=seed_view_fn, seed=0, epochs=1, labeled=stream,
                            hide_labels=True)
    element = next(iter(dataset))
    batch = Batch.from_element(element)
    assert isinstance(batch.labeled, LabeledBatch)
    assert len(batch.views) == 2 and len(batch.labeled.views) == 2
    assert batch.labeled.views[0].shape == (6, 4, 4, 3)
    assert batch.labeled.label.dtype == tf.int64 and batch.labeled.index.dtype == tf.int64
    np.testing.assert_array_equal(batch.labeled.label.numpy(), element["labeled"]["label"].numpy())
    np.testing.assert_array_equal(batch.labeled.index.numpy(), element["labeled"]["index"].numpy())
    assert np.all(batch.label.numpy() == -1)  # the unlabeled stream's labels are hidden


@pytest.mark.skipif(not os.path.isdir(os.path.join(CIFAR10, "train")), reason="needs the CIFAR-10 folder")
def test_cifar10_folder_budget_and_streamed_labeledbatches():
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
    batches = as_batches(dataset)
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

"""train_dataset / eval_dataset / distributed_train_dataset: determinism, sharding, shapes."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl.data import (
    Split,
    distributed_train_dataset,
    eval_dataset,
    load_source,
    steps_per_epoch,
    train_dataset,
)
from tests.data.image_writers import solid_image, write_image


def _numbered_split(count, size=4):
    """In-memory split whose image i is filled with the value i and whose label is i % 3."""
    images = np.broadcast_to(np.arange(count, dtype=np.uint8)[:, None, None, None], [count, size, size, 3])
    return Split(images=np.ascontiguousarray(images), paths=None, labels=np.arange(count) % 3)


def _seed_view_fn(images, seed):
    """Views: the images as float, and the batch's seed repeated per example (to inspect)."""
    assert images.shape.rank == 4 and images.dtype == tf.uint8  # called on whole batches
    batch = tf.shape(images)[0]
    return tf.cast(images, tf.float32) / 255.0, tf.tile(seed[None], [batch, 1])


def _batches(dataset):
    return list(dataset.as_numpy_iterator())


def _indices(batches):
    return [b["index"] for b in batches]


def test_batches_are_consistent_and_cover_each_epoch():
    split = _numbered_split(43)
    batches = _batches(train_dataset(split, batch_size=8, view_fn=_seed_view_fn, seed=1, epochs=2))
    assert len(batches) == 10  # 43 // 8 = 5 per epoch, the remainder of 3 dropped
    for batch in batches:
        images, seeds = batch["views"]
        assert images.shape == (8, 4, 4, 3) and images.dtype == np.float32
        # Index, image and label all describe the same example.
        np.testing.assert_allclose(images[:, 0, 0, 0] * 255, batch["index"], atol=1e-4)
        np.testing.assert_array_equal(batch["label"], batch["index"] % 3)
    for epoch in (batches[:5], batches[5:]):
        seen = np.concatenate(_indices(epoch))
        assert len(np.unique(seen)) == 40  # no example twice within an epoch
        seeds = np.stack([b["views"][1][0] for b in epoch])
        np.testing.assert_array_equal(seeds[:, 1], np.arange(5))  # [epoch key, batch index]
        assert len(np.unique(seeds[:, 0])) == 1
    assert batches[0]["views"][1][0, 0] != batches[5]["views"][1][0, 0]  # new key per epoch


def test_stream_is_a_function_of_seed_and_epoch():
    split = _numbered_split(40)

    def run(seed, start_epoch=0, epochs=2):
        dataset = train_dataset(
            split, batch_size=8, view_fn=_seed_view_fn, seed=seed, start_epoch=start_epoch, epochs=epochs
        )
        return _batches(dataset)

    first, again = run(seed=5), run(seed=5)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["index"], b["index"])
        np.testing.assert_array_equal(a["views"][1], b["views"][1])
    # A new epoch reshuffles; another seed gives another order.
    assert not np.array_equal(np.concatenate(_indices(first[:5])), np.concatenate(_indices(first[5:])))
    other = run(seed=6)
    assert not np.array_equal(np.concatenate(_indices(first)), np.concatenate(_indices(other)))
    # Resuming at epoch 1 replays the second epoch of the run from 0, seeds included.
    resumed = run(seed=5, start_epoch=1, epochs=2)
    assert len(resumed) == 5
    for a, b in zip(first[5:], resumed):
        np.testing.assert_array_equal(a["index"], b["index"])
        np.testing.assert_array_equal(a["views"][1], b["views"][1])


def test_forever_and_cardinality():
    split = _numbered_split(16)
    forever = train_dataset(split, batch_size=8, view_fn=None, seed=0)
    assert forever.cardinality().numpy() == tf.data.INFINITE_CARDINALITY
    taken = _batches(forever.take(7))  # runs past the 2-batch epochs without stopping
    assert len(taken) == 7
    views = taken[0]["views"]
    assert len(views) == 1 and views[0].dtype == np.float32 and views[0].max() <= 1.0
    finite = train_dataset(split, batch_size=8, view_fn=None, seed=0, start_epoch=2, epochs=5)
    assert finite.cardinality().numpy() == 6


def test_sharding_across_two_input_pipelines_matches_one_pipeline():
    split = _numbered_split(48)
    single = _batches(train_dataset(split, batch_size=8, view_fn=_seed_view_fn, seed=3, epochs=1))
    shards = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2
        )
        shards.append(
            _batches(train_dataset(split, batch_size=8, view_fn=_seed_view_fn, seed=3, epochs=1,
                                   input_context=context))
        )
    assert len(shards[0]) == len(shards[1]) == 6  # 48 // 8 global steps, one per-replica batch each
    for step, global_batch in enumerate(single):
        first, second = shards[0][step], shards[1][step]
        assert first["index"].shape == (4,)  # per-replica batch = 8 / 2
        # The two pipelines hold the two halves of the same global batch.
        np.testing.assert_array_equal(np.concatenate([first["index"], second["index"]]), global_batch["index"])
        # Each replica batch has its own augmentation seed: batch numbers 2 * step + replica.
        assert first["views"][1][0, 1] == 2 * step and second["views"][1][0, 1] == 2 * step + 1


def test_eval_dataset_keeps_order_and_last_partial_batch():
    split = _numbered_split(43)
    batches = _batches(eval_dataset(split, batch_size=8))
    assert [len(b["index"]) for b in batches] == [8, 8, 8, 8, 8, 3]
    np.testing.assert_array_equal(np.concatenate(_indices(batches)), np.arange(43))
    images = np.concatenate([b["image"] for b in batches])
    np.testing.assert_allclose(images, split.images / 255.0, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), np.arange(43) % 3)


def test_image_size_resizes_in_memory_batches():
    split = _numbered_split(16, size=8)
    batch = next(iter(train_dataset(split, batch_size=4, view_fn=None, seed=0, image_size=4)))
    assert batch["views"][0].shape == (4, 4, 4, 3)
    # Resizing a constant image keeps its value.
    np.testing.assert_allclose(batch["views"][0][:, 0, 0, 0] * 255, batch["index"], atol=1e-3)
    assert next(iter(eval_dataset(split, batch_size=4, image_size=2)))["image"].shape == (4, 2, 2, 3)


def test_streamed_split_trains_from_files(tmp_path):
    for i in range(12):
        write_image(str(tmp_path / f"c{i % 2}" / f"{i:02d}.png"), solid_image(10 * i, size=(6, 6)))
    split = load_source(str(tmp_path), cache_limit_bytes=0).train
    assert split.paths is not None and split.images is None
    dataset = train_dataset(split, batch_size=4, view_fn=None, seed=0, epochs=2, image_size=4)
    batches = _batches(dataset)
    assert len(batches) == 6
    again = _batches(train_dataset(split, batch_size=4, view_fn=None, seed=0, epochs=2, image_size=4))
    for batch, same in zip(batches, again):
        np.testing.assert_array_equal(batch["index"], same["index"])
        assert batch["views"][0].shape == (4, 4, 4, 3)
        # Files are sorted c0/00, c0/02, ..., c1/01, ...: position p holds file number
        # 2p (class 0) or 2(p - 6) + 1 (class 1), whose red value is 10x that number.
        number = np.where(batch["index"] < 6, 2 * batch["index"], 2 * (batch["index"] - 6) + 1)
        np.testing.assert_allclose(batch["views"][0][:, 0, 0, 0] * 255, 10 * number, atol=0.5)
        np.testing.assert_array_equal(batch["label"], (batch["index"] >= 6).astype(int))


def test_steps_per_epoch():
    assert steps_per_epoch(_numbered_split(43), 8) == 5
    with pytest.raises(ValueError, match=r"3 examples.*global_batch_size=8"):
        steps_per_epoch(_numbered_split(3), 8)
    with pytest.raises(ValueError, match="global_batch_size=8"):
        train_dataset(_numbered_split(3), batch_size=8, view_fn=None, seed=0)


def _two_cpu_strategy():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) < 2:
        pytest.skip("needs 2 logical CPUs (set before TensorFlow initialised its devices)")
    return tf.distribute.MirroredStrategy(devices[:2])


def test_distributed_train_dataset_splits_global_batches_over_replicas():
    strategy = _two_cpu_strategy()
    split = _numbered_split(32)
    distributed = distributed_train_dataset(
        strategy, split, global_batch_size=8, view_fn=_seed_view_fn, seed=4, epochs=1
    )
    single = _batches(train_dataset(split, batch_size=8, view_fn=_seed_view_fn, seed=4, epochs=1))
    steps = 0
    for step, element in enumerate(distributed):
        per_replica = [t.numpy() for t in strategy.experimental_local_results(element["index"])]
        assert [len(i) for i in per_replica] == [4, 4]
        np.testing.assert_array_equal(np.concatenate(per_replica), single[step]["index"])
        labels = np.concatenate([t.numpy() for t in strategy.experimental_local_results(element["label"])])
        np.testing.assert_array_equal(labels, single[step]["index"] % 3)
        steps += 1
    assert steps == 4


def test_distributed_global_batch_must_divide_by_replicas():
    strategy = _two_cpu_strategy()
    with pytest.raises(ValueError, match="global_batch_size=7"):
        distributed_train_dataset(strategy, _numbered_split(32), global_batch_size=7, view_fn=None, seed=0)


def _mask_view_fn(images, seed, masks=None):
    """One view: the batch's masks as float images (to check which rows were gathered)."""
    del images, seed
    return (tf.cast(masks, tf.float32)[..., None],)


def test_masks_are_gathered_by_index_and_handed_to_the_view_fn():
    split = _numbered_split(12)
    masks = np.broadcast_to(np.arange(12, dtype=np.uint8)[:, None, None] * 20, [12, 2, 2]).copy()
    for batch in _batches(train_dataset(split, batch_size=4, view_fn=_mask_view_fn, seed=0,
                                        epochs=2, masks=masks)):
        np.testing.assert_array_equal(batch["views"][0][:, 0, 0, 0], batch["index"] * 20)
    with pytest.raises(ValueError, match=r"masks have shape \(11, 2, 2\).*12 examples"):
        train_dataset(split, batch_size=4, view_fn=_mask_view_fn, seed=0, masks=masks[:11])


def test_a_view_fn_may_add_fields_to_the_element():
    # A recipe with BG_Swaps returns a dict: its extra fields reach the element.
    def with_negative(images, seed):
        views = tf.cast(images, tf.float32) / 255.0
        return {"views": (views,), "negative_view": views * 0.5,
                "negative_used": tf.ones([tf.shape(images)[0]])}

    (batch, *_) = _batches(train_dataset(_numbered_split(8), batch_size=4,
                                         view_fn=with_negative, seed=0, epochs=1))
    np.testing.assert_allclose(batch["negative_view"], batch["views"][0] * 0.5)
    assert batch["negative_used"].all()

"""tf.data pipelines: deterministic, resumable training batches of views, and eval batches.

The training stream is a pure function of (seed, epoch): epoch e shuffles the whole split
with a stateless permutation seeded by (seed, e), cuts it into batches and hands batch k
the augmentation seed [epoch_key(seed, e), k]. Resuming at epoch e therefore replays
exactly what an uninterrupted run would have seen, without saving iterator state.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from keras_ssl.data.readers import FileReader, InMemoryReader
from keras_ssl.data.split import Split


def steps_per_epoch(split: Split, global_batch_size: int) -> int:
    """Full global batches per epoch (the last partial batch is dropped).

    Args:
        split: the training split.
        global_batch_size: examples per step over all replicas.

    Raises:
        ValueError: when the split holds fewer examples than one global batch.
    """
    steps = len(split) // global_batch_size
    if steps <= 0:
        raise ValueError(
            f"The split has {len(split)} examples, fewer than one global batch "
            f"(global_batch_size={global_batch_size}); lower the batch size or use more data."
        )
    return steps


@dataclasses.dataclass(frozen=True)
class _BatchLayout:
    """How one global batch is cut into per-replica batches and shared among pipelines."""

    global_batch: int
    per_replica_batch: int
    num_replicas: int
    num_pipelines: int
    pipeline_id: int

    @classmethod
    def create(cls, global_batch: int, context: tf.distribute.InputContext | None) -> _BatchLayout:
        if context is None:
            return cls(global_batch, global_batch, 1, 1, 0)
        if context.num_replicas_in_sync % context.num_input_pipelines:
            raise ValueError(
                f"{context.num_replicas_in_sync} replicas cannot be shared evenly by "
                f"{context.num_input_pipelines} input pipelines."
            )
        return cls(
            global_batch,
            context.get_per_replica_batch_size(global_batch),
            context.num_replicas_in_sync,
            context.num_input_pipelines,
            context.input_pipeline_id,
        )

    @property
    def replicas_per_pipeline(self) -> int:
        return self.num_replicas // self.num_pipelines

    def global_batch_index(self, local_batch: tf.Tensor) -> tf.Tensor:
        """Number of this pipeline's `local_batch`-th batch in a single-pipeline stream."""
        step, replica = local_batch // self.replicas_per_pipeline, local_batch % self.replicas_per_pipeline
        return step * self.num_replicas + self.pipeline_id * self.replicas_per_pipeline + replica


def _epoch_key(seed: int, epoch: tf.Tensor) -> tf.Tensor:
    """int32 scalar mixing (seed, epoch); first half of every batch's augmentation seed."""
    pair = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.stateless_uniform([], seed=pair, minval=None, maxval=None, dtype=tf.int32)


def _epoch_positions(num_examples: int, steps: int, layout: _BatchLayout, seed: int, epoch) -> tf.Tensor:
    """This pipeline's shuffled positions for one epoch, as int64 [batches, per_replica_batch].

    Every pipeline computes the same permutation and keeps its own slice of each global
    batch, so the union over replicas of step t is global batch t of a 1-replica run.
    """
    pair = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    order = tf.random.experimental.stateless_shuffle(tf.range(num_examples, dtype=tf.int64), seed=pair)
    order = order[: steps * layout.global_batch]  # the tail that fills no global batch is dropped
    order = tf.reshape(order, [steps, layout.num_pipelines, -1])[:, layout.pipeline_id]
    return tf.reshape(order, [-1, layout.per_replica_batch])


def _views(view_fn):
    """Wraps view_fn(images uint8 [B,H,W,3], seed int32 [2]) into a batch -> element map."""

    def make_views(batch):
        images, seed = batch["images"], batch["seed"]
        if view_fn is None:
            views = (tf.cast(images, tf.float32) / 255.0,)
        else:
            views = view_fn(images, seed)
            views = tuple(views) if isinstance(views, (tuple, list)) else (views,)
        return {"views": views, "index": batch["index"], "label": batch["label"]}

    return make_views


def _deterministic(dataset: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = True  # parallel maps keep their order: needed for resume
    return dataset.with_options(options)


def train_dataset(
    split: Split,
    *,
    batch_size: int,
    view_fn=None,
    seed: int,
    start_epoch: int = 0,
    epochs: int | None = None,
    input_context: tf.distribute.InputContext | None = None,
    image_size: int | None = None,
) -> tf.data.Dataset:
    """Training batches of augmented views, deterministic in (seed, epoch).

    For each epoch e in range(start_epoch, epochs), the split is shuffled with a seed derived
    from (seed, e) and cut into batches with drop_remainder; each batch gets the stateless
    augmentation seed [epoch_key(seed, e), batch_index]. `view_fn` runs on whole uint8
    batches, which is much faster than augmenting image by image.

    Args:
        split: the training split (in memory or streamed).
        batch_size: the global batch size. Without input_context every element has this
            many examples; with it, elements have
            input_context.get_per_replica_batch_size(batch_size) examples and this
            pipeline yields only its share of every global batch.
        view_fn: view_fn(images uint8 [B, H, W, 3], seed int32 [2]) -> tuple of float32
            views. None gives one view, the images as float32 in [0, 1].
        seed: the run's data seed.
        start_epoch: first epoch to produce (resume point).
        epochs: end epoch (exclusive); None repeats forever.
        input_context: a tf.distribute.InputContext, to shard across input pipelines.
        image_size: resize images to image_size x image_size (needed for streamed splits
            whose files differ in size).

    Returns:
        A dataset of {"views": tuple of float32 [b, ...], "index": int64 [b] positions in
        `split`, "label": int64 [b]}.
    """
    layout = _BatchLayout.create(batch_size, input_context)
    steps = steps_per_epoch(split, layout.global_batch)
    num_examples = len(split)

    if split.images is not None:
        reader = InMemoryReader(split, image_size)
    else:
        reader = FileReader(split, image_size)

    def epoch_batches(epoch):
        positions = _epoch_positions(num_examples, steps, layout, seed, epoch)
        if split.images is not None:
            batches = tf.data.Dataset.from_tensor_slices(positions).map(
                reader, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
            )
        else:
            flat_positions = tf.data.Dataset.from_tensor_slices(tf.reshape(positions, [-1]))
            batches = reader.batches(flat_positions, layout.per_replica_batch, drop_remainder=True)
        key = _epoch_key(seed, epoch)

        def add_seed(local_number, batch):
            # Numbered as in a 1-pipeline run, so every replica's batch gets its own seed.
            number = tf.cast(layout.global_batch_index(local_number), tf.int32)
            return {**batch, "seed": tf.stack([key, number])}

        return batches.enumerate().map(add_seed)

    if epochs is None:
        epoch_numbers = tf.data.Dataset.counter(start_epoch)
    else:
        epoch_numbers = tf.data.Dataset.range(start_epoch, max(start_epoch, epochs))
    dataset = epoch_numbers.flat_map(epoch_batches)
    dataset = dataset.map(_views(view_fn), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if epochs is None:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
    elif split.images is not None:
        # Streamed splits may drop undecodable files, so only in-memory ones know their length.
        num_batches = (max(start_epoch, epochs) - start_epoch) * steps * layout.replicas_per_pipeline
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_batches))
    return _deterministic(dataset.prefetch(tf.data.AUTOTUNE))


def eval_dataset(split: Split, *, batch_size: int, image_size: int | None = None) -> tf.data.Dataset:
    """Evaluation batches in stored order, keeping the last partial batch.

    Args:
        split: the split to evaluate (in memory or streamed).
        batch_size: examples per batch.
        image_size: resize images to image_size x image_size.

    Returns:
        A dataset of {"image": float32 [B, H, W, 3] in [0, 1], "label": int64 [B],
        "index": int64 [B]}.
    """
    positions = tf.data.Dataset.range(len(split))
    if split.images is not None:
        batches = positions.batch(batch_size).map(InMemoryReader(split, image_size))
    else:
        batches = FileReader(split, image_size).batches(positions, batch_size, drop_remainder=False)

    def to_float(batch):
        image = tf.cast(batch["images"], tf.float32) / 255.0
        return {"image": image, "label": batch["label"], "index": batch["index"]}

    dataset = batches.map(to_float, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _deterministic(dataset.prefetch(tf.data.AUTOTUNE))


def distributed_train_dataset(
    strategy: tf.distribute.Strategy,
    split: Split,
    *,
    global_batch_size: int,
    view_fn=None,
    seed: int,
    start_epoch: int = 0,
    epochs: int | None = None,
    image_size: int | None = None,
):
    """`train_dataset` distributed over `strategy`'s replicas, one input pipeline per worker.

    Args:
        strategy: the tf.distribute strategy.
        split: the training split.
        global_batch_size: examples per step over all replicas; must divide by
            strategy.num_replicas_in_sync.
        view_fn, seed, start_epoch, epochs, image_size: as in `train_dataset`.

    Returns:
        A tf.distribute.DistributedDataset of per-replica elements.
    """
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise ValueError(
            f"global_batch_size={global_batch_size} does not divide by the {replicas} replicas "
            "in sync; pick a multiple of the replica count."
        )

    def dataset_fn(input_context):
        return train_dataset(
            split,
            batch_size=global_batch_size,
            view_fn=view_fn,
            seed=seed,
            start_epoch=start_epoch,
            epochs=epochs,
            input_context=input_context,
            image_size=image_size,
        )

    return strategy.distribute_datasets_from_function(dataset_fn)

"""tf.data pipelines: deterministic, resumable training batches of views, and eval batches.

The training stream is a pure function of (seed, epoch): epoch e shuffles the whole split
with a stateless permutation seeded by (seed, e), cuts it into batches and hands batch k
the augmentation seed [epoch_key(seed, e), k]. Resuming at epoch e therefore replays
exactly what an uninterrupted run would have seen, without saving iterator state, and
resuming at step k of epoch e (`start_step`) replays that epoch from its batch k on.

A semi-supervised run adds a labeled stream (`LabeledStream`): element t also carries labeled
batch t, drawn by a class-balanced sampler that is a pure function of (seed, global step t =
epoch * steps_per_epoch + step), so it resumes exactly too. The unlabeled split alone sets
the epoch length. Labeled batch k of epoch e gets the augmentation seed
[labeled_key(seed, e), -1 - k]: its second entry is negative, so it never equals an
unlabeled batch's seed.

A run that mixes images with their neighbours (CLIM) passes `neighbours`: the one place where
features reach back into the pipeline (shared/DESIGN.md). Each batch then reads a neighbour
per row from a table the method refreshes between epochs, reads the neighbours' images by
index and pastes them into a view (`keras_ssl.data.neighbour_mixing`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from keras_ssl.data.labeled_stream import LabeledReader, LabeledStream
from keras_ssl.data.readers import FileReader, InMemoryReader
from keras_ssl.data.split import Split

if TYPE_CHECKING:
    from keras_ssl.data.neighbour_mixing import NeighbourMixing


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

    def step_and_replica(self, local_batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(step in epoch, global replica id) of this pipeline's `local_batch`-th batch."""
        step, replica = local_batch // self.replicas_per_pipeline, local_batch % self.replicas_per_pipeline
        return step, self.pipeline_id * self.replicas_per_pipeline + replica

    def global_batch_index(self, local_batch: tf.Tensor) -> tf.Tensor:
        """Number of this pipeline's `local_batch`-th batch in a single-pipeline stream."""
        step, replica = self.step_and_replica(local_batch)
        return step * self.num_replicas + replica


def _epoch_key(seed: int, epoch: tf.Tensor) -> tf.Tensor:
    """int32 scalar mixing (seed, epoch); first half of every batch's augmentation seed."""
    pair = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.stateless_uniform([], seed=pair, minval=None, maxval=None, dtype=tf.int32)


def _labeled_epoch_key(seed: int, epoch: tf.Tensor) -> tf.Tensor:
    """The labeled stream's twin of `_epoch_key`, from the pair (seed, -1 - epoch).

    Epochs are >= 0, so this pair is never one that `_epoch_key` uses.
    """
    pair = tf.stack([tf.constant(seed, tf.int64), -1 - tf.cast(epoch, tf.int64)])
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


def plain_views(images: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor]:
    """A view_fn without augmentation: one view, the images as float32 in [0, 1].

    What view_fn=None gives the unlabeled stream; pass it as the labeled stream's view_fn
    for un-augmented labeled images beside augmented unlabeled ones.
    """
    del seed  # nothing random
    return (tf.cast(images, tf.float32) / 255.0,)


def _apply_view_fn(view_fn, images: tf.Tensor, seed: tf.Tensor, masks=None) -> dict:
    """{"views": tuple, ...}: a view_fn's views, plus what a recipe with BG_Swaps adds.

    The batch's foreground masks are passed on only when the pipeline has them
    (`train_dataset(masks=...)`), so any plain view_fn(images, seed) still works.
    """
    fn = view_fn or plain_views
    views = fn(images, seed) if masks is None else fn(images, seed, masks=masks)
    if isinstance(views, dict):
        return {**views, "views": tuple(views["views"])}
    return {"views": tuple(views) if isinstance(views, (tuple, list)) else (views,)}


def _views(view_fn, labeled_view_fn=None, neighbours=None):
    """Wraps view_fn(images uint8 [B,H,W,3], seed int32 [2]) into a batch -> element map.

    A batch with a "labeled" part gets its views from `labeled_view_fn`; with `neighbours`
    (a NeighbourMixing), the batch's neighbour images are mixed into a view; a batch with
    "masks" hands them to view_fn (background augmentation).
    """

    def make_views(batch):
        element = {
            **_apply_view_fn(view_fn, batch["images"], batch["seed"], batch.get("masks")),
            "index": batch["index"],
            "label": batch["label"],
        }
        if "labeled" in batch:
            labeled = batch["labeled"]
            element["labeled"] = {
                **_apply_view_fn(labeled_view_fn, labeled["images"], labeled["seed"]),
                "label": labeled["label"],
                "index": labeled["index"],
            }
        if neighbours is not None:
            element = neighbours.mix(element, batch)
        return element

    return make_views


def _labeled_layout(labeled: LabeledStream, layout: _BatchLayout) -> int:
    """The labeled batch rows of one replica; the labeled batch must divide by the replicas."""
    if labeled.batch_size % layout.num_replicas:
        raise ValueError(
            f"The labeled batch_size={labeled.batch_size} does not divide by the "
            f"{layout.num_replicas} replicas in sync; pick a multiple of the replica count."
        )
    return labeled.batch_size // layout.num_replicas


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
    start_step: int = 0,
    epochs: int | None = None,
    input_context: tf.distribute.InputContext | None = None,
    image_size: int | None = None,
    labeled: LabeledStream | None = None,
    hide_labels: bool = False,
    neighbours: NeighbourMixing | None = None,
    masks=None,
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
        start_step: global batches of `start_epoch` already trained on (a resume from a
            step checkpoint): that epoch starts at its batch `start_step`, with the
            positions, seeds and labeled batches it has in a run started from 0.
        epochs: end epoch (exclusive); None repeats forever.
        input_context: a tf.distribute.InputContext, to shard across input pipelines.
        image_size: resize images to image_size x image_size (needed for streamed splits
            whose files differ in size).
        labeled: a second, labeled stream drawn beside this one (semi-supervised runs).
            Element t then also carries labeled batch t (global step t = epoch *
            steps_per_epoch + step), drawn class-balanced by `ClassBalancedSampler`; its
            global batch size `labeled.batch_size` is cut across replicas like
            `batch_size` and must divide by their number. Epochs remain those of `split`.
        hide_labels: set the unlabeled stream's "label" to -1, so that a semi-supervised
            loss cannot see the labels of `split` (the labeled stream keeps its own).
        neighbours: a `keras_ssl.data.neighbour_mixing.NeighbourMixing` (CLIM): every batch
            of epoch e waits until its table is ready for e, draws one neighbour per row from
            it, reads the neighbours' images by dataset index and pastes a CutMix box of
            them into a view. The table is read when the batch is made, so a refresh between
            epochs reaches the running dataset; the same seed gives the same mixing.
        masks: uint8 [N, S, S] foreground masks of `split` in its order (255 = foreground,
            `keras_ssl.saliency.cached_masks`), for a view recipe with background
            augmentation: each batch gathers its rows' masks by index and view_fn gets them
            (`view_fn(images, seed, masks=...)`). S may be smaller than the images' side.

    Returns:
        A dataset of {"views": tuple of float32 [b, ...], "index": int64 [b] positions in
        `split`, "label": int64 [b] (-1 where unknown or hidden)}, plus, with `labeled`,
        "labeled": {"views": tuple of float32 [l, ...], "label": int64 [l], "index": int64
        [l] positions in `labeled.split`} with l = the labeled per-replica batch size.
        With `neighbours`, "views" ends with the mixed view, and the element also holds
        "neighbour_index" (int64 [b]) and "mix_ratio" (float32 [b], the share of the mixed
        view's pixels that come from the anchor). A recipe with BG_Swaps adds
        "negative_view" and "negative_used" (`keras_ssl.augment.background_views`).
    """
    layout = _BatchLayout.create(batch_size, input_context)
    steps = steps_per_epoch(split, layout.global_batch)
    num_examples = len(split)
    if not 0 <= start_step < steps:
        raise ValueError(f"start_step={start_step} is not a step of an epoch of {steps} steps.")

    if split.images is not None:
        reader = InMemoryReader(split, image_size)
    else:
        reader = FileReader(split, image_size)
    if neighbours is not None:
        neighbours.check_split(num_examples)
        # Neighbours are read by index, like the labeled stream's rows.
        read_neighbours = reader if split.images is not None else reader.gather

    mask_table = None
    if masks is not None:
        masks = np.asarray(masks)
        if masks.ndim != 3 or len(masks) != num_examples:
            raise ValueError(f"masks have shape {masks.shape} but the split has {num_examples} "
                             "examples: give one [S, S] mask per example, in the split's order.")
        mask_table = tf.constant(masks, tf.uint8)

    labeled_reader = None
    if labeled is not None:
        if not isinstance(labeled, LabeledStream):
            raise TypeError(f"labeled must be a LabeledStream, got {type(labeled).__name__}.")
        labeled_rows = _labeled_layout(labeled, layout)
        labeled_reader = LabeledReader(
            labeled, seed=seed, image_size=image_size, shared_split=split, shared_reader=reader
        )

    def with_labeled(epoch, labeled_key, local_number, element):
        """Adds this replica's share of labeled batch t (t = the global step) to an element."""
        step, replica = layout.step_and_replica(local_number)
        global_step = tf.cast(epoch, tf.int64) * steps + step
        batch = labeled_reader(global_step, replica * labeled_rows, labeled_rows)
        number = tf.cast(step * layout.num_replicas + replica, tf.int32)
        return {**element, "labeled": {**batch, "seed": tf.stack([labeled_key, -1 - number])}}

    def epoch_batches(epoch):
        positions = _epoch_positions(num_examples, steps, layout, seed, epoch)
        # The batches a resumed epoch already trained on are never read; the
        # rest keep their numbers (and so their seeds) by counting from `skipped`.
        skipped = tf.cast(tf.equal(epoch, start_epoch), tf.int64) * (start_step * layout.replicas_per_pipeline)
        positions = positions[skipped:]
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
            element = {**batch, "seed": tf.stack([key, number])}
            if hide_labels:
                element["label"] = tf.fill(tf.shape(batch["label"]), tf.constant(-1, tf.int64))
            if mask_table is not None:
                element["masks"] = tf.gather(mask_table, batch["index"])
            if neighbours is not None:
                element = neighbours.add_neighbours(element, epoch, read_neighbours)
            return element

        numbered = batches.enumerate(start=skipped)
        if labeled_reader is None:
            return numbered.map(add_seed)
        labeled_key = _labeled_epoch_key(seed, epoch)

        def add_seed_and_labeled(local_number, batch):
            return with_labeled(epoch, labeled_key, local_number, add_seed(local_number, batch))

        return numbered.map(add_seed_and_labeled, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    if epochs is None:
        epoch_numbers = tf.data.Dataset.counter(start_epoch)
    else:
        epoch_numbers = tf.data.Dataset.range(start_epoch, max(start_epoch, epochs))
    dataset = epoch_numbers.flat_map(epoch_batches)
    labeled_view_fn = labeled.view_fn if labeled is not None and labeled.view_fn is not None else view_fn
    dataset = dataset.map(
        _views(view_fn, labeled_view_fn, neighbours), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    if epochs is None:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
    elif split.images is not None:
        # Streamed splits may drop undecodable files, so only in-memory ones know their length.
        num_steps = max(0, (max(start_epoch, epochs) - start_epoch) * steps - start_step)
        num_batches = num_steps * layout.replicas_per_pipeline
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
    start_step: int = 0,
    epochs: int | None = None,
    image_size: int | None = None,
    labeled: LabeledStream | None = None,
    hide_labels: bool = False,
    neighbours: NeighbourMixing | None = None,
    masks=None,
):
    """`train_dataset` distributed over `strategy`'s replicas, one input pipeline per worker.

    Args:
        strategy: the tf.distribute strategy.
        split: the training split.
        global_batch_size: examples per step over all replicas; must divide by
            strategy.num_replicas_in_sync.
        view_fn, seed, start_epoch, start_step, epochs, image_size: as in `train_dataset`.
        labeled: the labeled stream, as in `train_dataset`; its global batch size
            `labeled.batch_size` is split across the replicas and must divide by their number.
        hide_labels, neighbours, masks: as in `train_dataset`.

    Returns:
        A tf.distribute.DistributedDataset of per-replica elements.
    """
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise ValueError(
            f"global_batch_size={global_batch_size} does not divide by the {replicas} replicas "
            "in sync; pick a multiple of the replica count."
        )
    if labeled is not None and labeled.batch_size % replicas:
        raise ValueError(
            f"The labeled batch_size={labeled.batch_size} does not divide by the {replicas} "
            "replicas in sync; pick a multiple of the replica count."
        )

    def dataset_fn(input_context):
        return train_dataset(
            split,
            batch_size=global_batch_size,
            view_fn=view_fn,
            seed=seed,
            start_epoch=start_epoch,
            start_step=start_step,
            epochs=epochs,
            input_context=input_context,
            image_size=image_size,
            labeled=labeled,
            hide_labels=hide_labels,
            neighbours=neighbours,
            masks=masks,
        )

    return strategy.distribute_datasets_from_function(dataset_fn)

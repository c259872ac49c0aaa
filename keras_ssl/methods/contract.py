"""The typed values a method's hooks receive: the batch, the step context, the run context.

The base (`keras_ssl.methods.Method`) builds a `Batch` from the pipeline's
element and a `StepContext` once per step, and hands both to the hooks
(`forward`, `loss`, `after_apply`); a `RunContext` describes the run a method
is built for (how many examples, how many steps), so constructors never guess
it from their own signatures.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class LabeledBatch:
    """The labeled stream of a semi-supervised step.

    Attributes:
        views: tuple of float32 image tensors [b, H, W, 3], one per view.
        label: int [b] class of each row.
        index: int64 [b] dataset index of each row, or None.
    """

    views: tuple
    label: tf.Tensor
    index: Optional[tf.Tensor] = None


@dataclasses.dataclass(frozen=True)
class Batch:
    """What a method's `forward` receives.

    Attributes:
        views: tuple of float32 image tensors [B, H, W, 3], one per view, in
            the order of the method's view recipe.
        index: int64 [B] dataset index of each row (the row of a memory bank).
        label: int64 [B] class of each row; -1 where it is unknown (an
            unlabeled set, or labels hidden from the loss).
        labeled: an optional second, labeled stream drawn beside this one,
            with its own batch size (`LabeledBatch`), or None.
        negative_view: an optional extra negative image per row [B, H, W, 3]
            (background augmentation's BG_Swaps: another foreground on the
            anchor view's background), or None.
        negative_used: bool [B], which rows' `negative_view` the loss uses
            (the pipeline hands it on as float32 0/1).
    """

    views: tuple
    index: tf.Tensor
    label: tf.Tensor
    labeled: Optional[LabeledBatch] = None
    negative_view: Optional[tf.Tensor] = None
    negative_used: Optional[tf.Tensor] = None

    @classmethod
    def from_element(cls, element):
        """The batch of one pipeline element.

        Accepts a `Batch`, or a dict with "views" (a tensor or a tuple of
        them), optional "index" and "label" (-1 when absent), and an optional
        "labeled" dict with "views", "label" and optional "index", and the
        optional "negative_view" and "negative_used".
        """
        if isinstance(element, Batch):
            return element
        if not isinstance(element, dict) or "views" not in element:
            raise ValueError("A training element must be a dict with 'views' (and 'index', "
                             f"'label', 'labeled' where present); got {type(element).__name__}.")
        views = element["views"]
        views = tuple(views) if isinstance(views, (tuple, list)) else (views,)
        rows = tf.shape(views[0])[0]
        index = element.get("index")
        index = (tf.range(tf.cast(rows, tf.int64)) if index is None
                 else tf.cast(index, tf.int64))
        label = element.get("label")
        label = (tf.fill([rows], tf.constant(-1, tf.int64)) if label is None
                 else tf.cast(label, tf.int64))
        labeled = element.get("labeled")
        if labeled is not None and not isinstance(labeled, LabeledBatch):
            labeled_views = labeled["views"]
            labeled = LabeledBatch(
                views=(tuple(labeled_views) if isinstance(labeled_views, (tuple, list))
                       else (labeled_views,)),
                label=tf.cast(labeled["label"], tf.int64),
                index=(None if labeled.get("index") is None
                       else tf.cast(labeled["index"], tf.int64)))
        negative_used = element.get("negative_used")
        return cls(views=views, index=index, label=label, labeled=labeled,
                   negative_view=element.get("negative_view"),
                   negative_used=None if negative_used is None else tf.cast(negative_used, tf.bool))


@dataclasses.dataclass(frozen=True)
class StepContext:
    """Where training stands at the step being taken; built once per step by the base.

    Attributes:
        step: int64 scalar tensor, the 0-based index of this optimizer step
            (`optimizer.iterations` before the update is applied). Hooks
            after the update see the same value: it names the step, not the
            counter.
        epoch: int64 scalar tensor, the 0-based epoch of this step
            (`step // steps_per_epoch`), or -1 when the epoch length is not
            known.
        steps_per_epoch: Python int, or None when the run did not say.
        seed: the run's seed (a Python int).
        training: whether this is a training step.
    """

    step: tf.Tensor
    epoch: tf.Tensor
    steps_per_epoch: Optional[int] = None
    seed: int = 0
    training: bool = True

    @classmethod
    def at(cls, step, *, steps_per_epoch=None, seed=0, training=True):
        step = tf.cast(step, tf.int64)
        epoch = (step // steps_per_epoch if steps_per_epoch
                 else tf.constant(-1, tf.int64))
        return cls(step=step, epoch=epoch, steps_per_epoch=steps_per_epoch,
                   seed=seed, training=training)

    def seed_for(self, stream):
        """A stateless seed (int32 [2]) for the named random `stream` at this step.

        The same (run seed, step, stream) always gives the same seed, on
        every replica, so replicas draw the same numbers and a resumed run
        draws what an uninterrupted one would have. `stream` is a small
        non-negative int naming the use: each method documents its own.
        """
        base = tf.stack([tf.cast(self.step, tf.int32), tf.constant(self.seed, tf.int32)])
        if stream == 0:
            return base
        return tf.random.experimental.stateless_fold_in(base, stream)


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What a method needs to know about the run it is built for.

    Attributes:
        num_examples: size of the training split (memory banks, pools).
        steps_per_epoch: optimizer steps per epoch.
        epochs: epochs of the whole run.
        seed: the run's seed.
    """

    num_examples: Optional[int] = None
    steps_per_epoch: Optional[int] = None
    epochs: Optional[int] = None
    seed: int = 0

    @property
    def total_steps(self):
        """Optimizer steps of the whole run (None when the length is not known)."""
        if self.steps_per_epoch is None or self.epochs is None:
            return None
        return self.steps_per_epoch * self.epochs

    def get_config(self):
        return dataclasses.asdict(self)

"""Contrastive logits as a value, and the transforms that change them.

Variants of a contrastive loss differ in what they do to its logits before
the softmax, not in the encoder: MoCHi appends mixed hard negatives, IFND
masks false negatives, ASCL softens the one-hot target, XMoCo adds
cross-similarity terms. Each is a *logit transform*: a pure function of a
`ContrastiveLogits` value (and the step's context) that returns a new one.
MoCo, SimCLR and NPID take a list of them (`logit_transforms=[...]`), so a
variant is a keyword, not a subclass per combination.

A method's loss has one `ContrastiveLogits` per *direction* (a query view
against its positives: MoCo's symmetric loss and SimCLR have two). Most
transforms act on each direction alone; a `joint` one (XMoCo's cross-view
consistency) receives the tuple of all directions. `transform_directions`
runs a list of either kind, and `directions_cross_entropy` averages the
directions' losses.

The loss of a `ContrastiveLogits` is the cross-entropy of its targets against
the softmax of its logits over the columns its mask keeps, plus its extra
terms (`contrastive_cross_entropy`).

Transforms written as `LogitTransform` subclasses are saved with the model
(`get_config` from their keyword arguments) and built from config specs by
name (`keras_ssl.methods.registry.LOGIT_TRANSFORMS`); a plain function
`f(logits, ctx)` also works where nothing is saved.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import keras
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class ContrastiveLogits:
    """One batch of a contrastive loss before the softmax.

    Attributes:
        logits: [B, C] float32 scores divided by the temperature.
        targets: [B, C] float32 target distribution of each row (one-hot on
            the positive for InfoNCE).
        mask: [B, C] bool, False for columns left out of the softmax (and
            the target); None keeps every column.
        queries: [B, D] unit-norm embeddings that are classified.
        positives: [B, D] unit-norm positive of each query (MoCo's keys), or None.
        negatives: [M, D] unit-norm shared negatives (a queue, a bank), or None.
        temperature: the temperature the logits were divided by.
        index: [B] dataset indices of the queries, or None.
        extra_losses: named scalar terms added to the loss (regularisers).
        logs: named scalar diagnostics, logged but not added to the loss.
        direction: which of the method's directions this is (0, 1, ...), so
            a transform that draws random numbers draws different ones for
            each.
        column_index: [C] int dataset index of the example each column
            scores, the same for every row (a batch row, a queue or bank
            row), -1 where a column has no single example (MoCo's positive
            column, one key per row; queue rows never written); None when the
            method does not know them. Transforms that act on pseudo-labels
            of the negatives (IFND) read it.
    """

    logits: tf.Tensor
    targets: tf.Tensor
    mask: Optional[tf.Tensor] = None
    queries: Optional[tf.Tensor] = None
    positives: Optional[tf.Tensor] = None
    negatives: Optional[tf.Tensor] = None
    temperature: float = 1.0
    index: Optional[tf.Tensor] = None
    extra_losses: dict = dataclasses.field(default_factory=dict)
    logs: dict = dataclasses.field(default_factory=dict)
    direction: int = 0
    column_index: Optional[tf.Tensor] = None

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def queue_logits(queries, keys, negatives, *, temperature, index=None, negative_index=None):
    """InfoNCE's logits: [q.k, q.negatives] / t, the positive in column 0.

    Args:
        queries: [B, D] online embeddings (normalised here).
        keys: [B, D] positives (normalised here, no gradient).
        negatives: [M, D] unit-norm negatives (no gradient).
        temperature: softmax temperature.
        index: optional [B] dataset indices, for transforms that need them.
        negative_index: optional [M] dataset index of each negative (a
            queue's index column, -1 for rows never written); the
            `column_index` of the result, with -1 for the positive column.
    """
    queries = tf.math.l2_normalize(tf.cast(queries, tf.float32), axis=1)
    keys = tf.stop_gradient(tf.math.l2_normalize(tf.cast(keys, tf.float32), axis=1))
    negatives = tf.stop_gradient(tf.cast(negatives, tf.float32))
    positive = tf.reduce_sum(queries * keys, axis=1, keepdims=True)
    logits = tf.concat([positive, tf.matmul(queries, negatives, transpose_b=True)],
                       axis=1) / temperature
    targets = tf.one_hot(tf.zeros(tf.shape(queries)[0], tf.int32), tf.shape(logits)[1])
    column_index = None
    if negative_index is not None:
        # Column 0 holds a different key in every row: no one example.
        column_index = tf.concat([tf.constant([-1], tf.int64),
                                  tf.cast(negative_index, tf.int64)], axis=0)
    return ContrastiveLogits(logits=logits, targets=targets, queries=queries,
                             positives=keys, negatives=negatives,
                             temperature=temperature, index=index,
                             column_index=column_index)


def batch_logits(anchors, same_view, other_view, offset, *, temperature, index=None,
                 global_index=None):
    """NT-Xent's logits of one direction, negatives from the global batch.

    Columns are [anchors . other_view, anchors . same_view] over the G global
    rows: the positive of local row i is column offset + i, and its own
    similarity (column G + offset + i) is masked out.

    Args:
        anchors: [B, D] local embeddings (normalised here).
        same_view, other_view: [G, D] all-gathered embeddings of the anchors'
            view and of the other view (normalised here, with gradients).
        offset: global row of local row 0.
        temperature: softmax temperature.
        index: optional [B] dataset indices.
        global_index: optional [G] dataset indices of the global batch (the
            all-gathered `index`); each view's columns are those rows, so it
            gives the `column_index` of the result.
    """
    anchors = tf.math.l2_normalize(tf.cast(anchors, tf.float32), axis=1)
    same_view = tf.math.l2_normalize(tf.cast(same_view, tf.float32), axis=1)
    other_view = tf.math.l2_normalize(tf.cast(other_view, tf.float32), axis=1)
    global_batch = tf.shape(same_view)[0]
    rows = tf.range(tf.shape(anchors)[0]) + offset
    logits = tf.concat([tf.matmul(anchors, other_view, transpose_b=True),
                        tf.matmul(anchors, same_view, transpose_b=True)], axis=1) / temperature
    mask = tf.logical_not(tf.cast(tf.one_hot(global_batch + rows, 2 * global_batch), tf.bool))
    column_index = None
    if global_index is not None:
        global_index = tf.cast(global_index, tf.int64)
        column_index = tf.concat([global_index, global_index], axis=0)
    return ContrastiveLogits(logits=logits, targets=tf.one_hot(rows, 2 * global_batch),
                             mask=mask, queries=anchors, positives=tf.gather(other_view, rows),
                             negatives=None, temperature=temperature, index=index,
                             column_index=column_index)


def bank_logits(queries, bank, index, *, temperature):
    """NPID's logits: each query against every memory row; its own row is the positive.

    Args:
        queries: [B, D] embeddings (normalised here).
        bank: [N, D] memory rows (no gradient).
        index: [B] dataset indices, the positive column of each query.
        temperature: softmax temperature.
    """
    queries = tf.math.l2_normalize(tf.cast(queries, tf.float32), axis=1)
    bank = tf.stop_gradient(tf.cast(bank, tf.float32))
    logits = tf.matmul(queries, bank, transpose_b=True) / temperature
    # Column j is bank row j, which belongs to example j.
    return ContrastiveLogits(logits=logits,
                             targets=tf.one_hot(tf.cast(index, tf.int32), tf.shape(bank)[0]),
                             queries=queries, positives=tf.gather(bank, index),
                             negatives=bank, temperature=temperature, index=index,
                             column_index=tf.range(tf.shape(bank, out_type=tf.int64)[0]))


class LogitTransform:
    """Base of the logit transforms that are saved with a model.

    Subclasses take keyword arguments only (they are the config), implement
    `__call__(logits, ctx)`, set `spec_name` (the key of their config spec,
    `{"mochi": {...}}`, in `keras_ssl.methods.registry.LOGIT_TRANSFORMS`) and
    may set:

    - `joint = True` to receive the tuple of every direction's
      `ContrastiveLogits` and return a tuple of the same length;
    - `log_names`: the names of the extra terms and diagnostics they add,
      which the method then tracks;
    - `needs_column_index = True` when they read `column_index` (a MoCo
      queue then keeps each row's dataset index).

    Transforms that learn from the whole training set (IFND's pseudo-labels)
    use three more hooks, which the method calls for them:

    - `make_state(run)`: once, when the method is built (under the
      strategy's scope), with its `RunContext`; returns a `keras.layers.Layer`
      holding the transform's variables, or None. The method owns that layer,
      so it is saved, checkpointed and replicated like the method's own state
      (and listed in `state_variables`); the transform keeps a reference.
    - `wants_epoch_features(epoch, run)` and, with `uses_epoch_features =
      True`, `on_epoch_features(features, ctx)`: the epoch feature pass, as a
      method has it (`keras_ssl.methods.Method`). The method asks its
      transforms before each epoch and hands each one that uses the pass the
      features of the whole training set.
    """

    spec_name = None
    joint = False
    log_names = ()
    needs_column_index = False
    uses_epoch_features = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        keras.saving.register_keras_serializable(package="keras_ssl", name=cls.__name__)(cls)

    def __new__(cls, *args, **kwargs):
        if args:
            raise TypeError(f"{cls.__name__} takes keyword arguments only (they are its "
                            "config).")
        instance = super().__new__(cls)
        instance._arguments = dict(kwargs)
        return instance

    def __call__(self, logits, ctx):
        raise NotImplementedError

    def make_state(self, run):
        """The layer of this transform's variables for a method built for `run`, or None."""
        return None

    def wants_epoch_features(self, epoch, run):
        """Whether the features of the whole training set must be computed before `epoch`."""
        return False

    def on_epoch_features(self, features, ctx):
        """Receives [N, D] features of the whole training set, in dataset-index order."""

    def get_config(self):
        return dict(self._arguments)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{key}={value!r}" for key, value in self._arguments.items())
        return f"{type(self).__name__}({arguments})"


def large_negative(dtype):
    """A logit that leaves the softmax: -1e9, or the most negative finite `dtype` value.

    float16 cannot hold -1e9 (it would be -inf, and a zero target times -inf
    makes the cross-entropy NaN); its lowest finite value does the same job,
    since exp of it minus any finite maximum underflows to 0.
    """
    dtype = tf.as_dtype(dtype)
    return tf.constant(max(-1e9, float(dtype.min)), dtype)


def contrastive_cross_entropy(logits: ContrastiveLogits):
    """(mean cross-entropy + extra terms, logs of the extra terms and diagnostics).

    Masked columns get a large negative logit (`large_negative`) and no
    target mass, so they leave both the softmax's denominator and the target.
    """
    scores = logits.logits
    targets = logits.targets
    if logits.mask is not None:
        scores = tf.where(logits.mask, scores, large_negative(scores.dtype))
        targets = tf.where(logits.mask, targets, 0.0)
        targets /= tf.maximum(tf.reduce_sum(targets, axis=1, keepdims=True), 1e-12)
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(targets, scores))
    for term in logits.extra_losses.values():
        loss += term
    return loss, {**logits.logs, **logits.extra_losses}


def _checked(result, transform):
    if not isinstance(result, ContrastiveLogits):
        raise TypeError(f"The logit transform {transform!r} must return "
                        f"ContrastiveLogits, got {type(result).__name__}.")
    return result


def apply_transforms(logits: ContrastiveLogits, transforms, ctx):
    """Runs each transform in order on one direction: `transform(logits, ctx)`."""
    return transform_directions((logits,), transforms, ctx)[0]


def transform_directions(directions, transforms, ctx):
    """Runs each transform in order on every direction (a tuple of `ContrastiveLogits`).

    A transform with `joint = True` gets the whole tuple and returns one of
    the same length; any other is applied to each direction alone.
    """
    directions = tuple(directions)
    for transform in transforms:
        if getattr(transform, "joint", False):
            result = transform(directions, ctx)
            if not isinstance(result, (tuple, list)) or len(result) != len(directions):
                raise TypeError(f"The joint logit transform {transform!r} must return a "
                                f"tuple of {len(directions)} ContrastiveLogits.")
            directions = tuple(_checked(item, transform) for item in result)
        else:
            directions = tuple(_checked(transform(item, ctx), transform)
                               for item in directions)
    return directions


def directions_cross_entropy(directions):
    """(loss, logs) averaged over directions: each one's cross-entropy and extra terms.

    A joint transform that computes one term for all directions puts it in
    every direction, so the average counts it once.
    """
    losses, logs = [], {}
    for item in directions:
        loss, item_logs = contrastive_cross_entropy(item)
        losses.append(loss)
        for name, value in item_logs.items():
            logs.setdefault(name, []).append(value)
    count = float(len(losses))
    return (tf.add_n(losses) / count,
            {name: tf.add_n(values) / float(len(values)) for name, values in logs.items()})

"""IFND's false negative elimination (Chen et al., ICLR 2022) as a logit transform.

A reconstruction: the official code (tsaishien-chen/IFND) could not be read,
and neither could the paper's method section; see `keras_ssl.methods.ifnd`
for every guessed choice. The rule, after shared/reference/methods-b.md §2
and the "smallest CPU recipe" of methods-c.md §2 (which wins where they
differ):

Each epoch the whole training set is clustered at several granularities
(levels l = 1..L), and each example n gets labels y_l(n) and a confidence
c(n); the top alpha(e) share of the examples by confidence is *accepted*.
For an anchor i and a column k of its logits (a negative: another row of
SimCLR's global batch, a row of MoCo's queue, a row of NPID's bank),

    k is a false negative of i  <=>  accepted(i) and accepted(k)
                                     and y_l(i) = y_l(k) for SOME level l

and false negatives leave the softmax's denominator:

    L_elim(i) = -log  e^{s_ip / t} / (e^{s_ip / t} + sum_{k not in FN(i), k != p} e^{s_ik / t})

Never removed: a column that holds target mass (the anchor's own positive,
or a soft target an earlier transform put there) and a column already left
out (SimCLR's anchor against itself). An anchor that is not accepted keeps
the plain instance loss, and with nothing accepted the loss is exactly the
base method's.

The transform reads the dataset index behind every column
(`ContrastiveLogits.column_index`: SimCLR's gathered batch indices, MoCo's
queue index column, NPID's bank rows) and looks the labels up in a
`keras_ssl.layers.PseudoLabels` table, which the method owns and the epoch
feature pass refills (`on_epoch_features`).
"""

import math

import numpy as np
import tensorflow as tf

from keras_ssl.layers.pseudo_labels import PseudoLabels
from keras_ssl.losses.logit_transforms import LogitTransform, large_negative
from keras_ssl.ops.dataset_kmeans import hierarchical_kmeans


def acceptance_rate(epoch, epochs, *, initial=0.0, final=1.0):
    """alpha(e): the share of examples accepted during 0-based epoch `epoch` of `epochs`.

    Linear from `initial` during the first epoch (e = 0) to `final` during
    the last (e = epochs - 1): methods-c.md's alpha(e) = e / E with e the
    0-based epoch and E = epochs - 1, the index of the last epoch, so that the
    first epoch is plain contrastive learning and the last accepts every
    example. A run of one epoch stays at `initial`; epochs past the end stay
    at `final`.

    Example:
    >>> [round(acceptance_rate(e, 5), 2) for e in range(5)]
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    if epochs is None or epochs <= 1:
        return float(initial)
    progress = min(max(epoch / (epochs - 1), 0.0), 1.0)
    return float(initial + (final - initial) * progress)


def accept_most_confident(confidence, rate):
    """bool [N]: the round(rate * N) examples of highest `confidence` [N] (ties: lower index).

    Example:
    >>> accept_most_confident(np.array([0.2, 0.9, 0.5, 0.9]), 0.5).tolist()
    [False, True, False, True]
    """
    confidence = np.asarray(confidence, dtype="float64")
    count = int(math.floor(rate * len(confidence) + 0.5))
    accepted = np.zeros(len(confidence), dtype=bool)
    # A stable sort of the negated scores keeps equal scores in index order.
    accepted[np.argsort(-confidence, kind="stable")[:count]] = True
    return accepted


def false_negative_mask(anchor_labels, anchor_accepted, column_labels, column_accepted):
    """bool [B, C]: column k shares a label with anchor i at some level, both accepted.

    Args:
        anchor_labels: int [L, B] labels of the anchors at each level.
        anchor_accepted: bool [B].
        column_labels: int [L, C] labels of the columns' examples.
        column_accepted: bool [C] (False where a column has no example).
    """
    shared = tf.reduce_any(tf.equal(anchor_labels[:, :, None], column_labels[:, None, :]),
                           axis=0)
    both_accepted = tf.logical_and(anchor_accepted[:, None], column_accepted[None, :])
    return tf.logical_and(shared, both_accepted)


def eliminate_false_negatives(logits, false_negatives, anchor_accepted):
    """`logits` with the `false_negatives` [B, C] among its negatives taken out of the softmax.

    Only columns that are in the softmax and hold no target mass are
    candidates, so a positive (or a column already masked) is never touched.
    A removed column is masked out and its logit set to `large_negative`, so
    a later transform that reads the logits alone sees it gone as well.

    Logs `false_negative_fraction` (removed / candidate negatives, over this
    replica's rows) and `accepted_fraction` (the share of accepted anchors).
    """
    mask = logits.mask
    if mask is None:
        mask = tf.ones_like(logits.logits, tf.bool)
    candidates = tf.logical_and(mask, tf.logical_not(logits.targets > 0))
    removed = tf.logical_and(candidates, false_negatives)
    removed_count = tf.reduce_sum(tf.cast(removed, tf.float32))
    candidate_count = tf.reduce_sum(tf.cast(candidates, tf.float32))
    logs = {"false_negative_fraction": removed_count / tf.maximum(candidate_count, 1.0),
            "accepted_fraction": tf.reduce_mean(tf.cast(anchor_accepted, tf.float32))}
    scores = logits.logits
    return logits.replace(
        logits=tf.where(removed, large_negative(scores.dtype), scores),
        mask=tf.logical_and(mask, tf.logical_not(removed)),
        logs={**logits.logs, **logs})


class FalseNegativeElimination(LogitTransform):
    """IFND: remove accepted same-cluster negatives from the denominator (a reconstruction).

    Args:
        cluster_counts: K of each granularity of the per-epoch k-means
            ((10, 20, 50) in methods-c.md's CIFAR-10 recipe, [UNVERIFIED]).
        initial_acceptance: alpha during the first epoch (0: the first epoch
            is the base method's, and needs no clustering).
        final_acceptance: alpha during the last epoch (1: every example).
        kmeans_max_iters: Lloyd iterations at most, per level and restart
            (`keras_ssl.ops.dataset_kmeans`).
        kmeans_restarts: k-means++ restarts per level, the best kept (the
            op's default, 10, as ProPos's clustering).

    Each epoch e whose alpha(e) (`acceptance_rate`) is above 0, the method's
    epoch feature pass hands the features of the whole training set to
    `on_epoch_features`: spherical k-means at every count of
    `cluster_counts` (`hierarchical_kmeans`, seeded by the run's seed and
    the epoch), confidence = the mean over levels of each example's cosine
    to its centroid, and the top alpha(e) share accepted. The labels live in
    a `PseudoLabels` layer the method owns (`make_state`; built for
    `run.num_examples`).

    Works on any layout that says which example each column is
    (`column_index`): SimCLR's global batch, MoCo's queue (which then keeps
    an index column), NPID's bank. Needs the run's `epochs` and
    `steps_per_epoch` for the schedule (the pass's step context names the
    epoch).

    Example:
    >>> from keras_ssl import methods
    >>> from keras_ssl.backbones import tiny_backbone
    >>> model = methods.get(
    ...     "simclr", encoder=tiny_backbone(), projection_dim=8,
    ...     run=methods.RunContext(num_examples=64, steps_per_epoch=2, epochs=5),
    ...     logit_transforms=[FalseNegativeElimination(cluster_counts=(2, 4))])
    >>> model.uses_epoch_features, model.wants_epoch_features(0), model.wants_epoch_features(1)
    (True, False, True)
    """

    spec_name = "ifnd"
    log_names = ("false_negative_fraction", "accepted_fraction")
    needs_column_index = True
    uses_epoch_features = True

    def __init__(self, *, cluster_counts=(10, 20, 50), initial_acceptance=0.0,
                 final_acceptance=1.0, kmeans_max_iters=300, kmeans_restarts=10):
        counts = tuple(cluster_counts)
        if not counts or not all(isinstance(k, int) and k >= 1 for k in counts):
            raise ValueError("IFND's cluster_counts is a non-empty sequence of ints >= 1 "
                             f"(one k-means per granularity), got {cluster_counts!r}.")
        for name, value in (("initial_acceptance", initial_acceptance),
                            ("final_acceptance", final_acceptance)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"IFND's {name} is a share of the examples, in [0, 1]; "
                                 f"got {value!r}.")
        for name, value in (("kmeans_max_iters", kmeans_max_iters),
                            ("kmeans_restarts", kmeans_restarts)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"IFND's {name} must be an int >= 1, got {value!r}.")
        self.cluster_counts = counts
        self.initial_acceptance = float(initial_acceptance)
        self.final_acceptance = float(final_acceptance)
        self.kmeans_max_iters = kmeans_max_iters
        self.kmeans_restarts = kmeans_restarts
        self.run = None
        self.state = None

    def get_config(self):
        # A list, as it comes back from a saved model's JSON: the original
        # and the reloaded transform then have the same config.
        return {**super().get_config(), "cluster_counts": list(self.cluster_counts)}

    # ---- state and the epoch feature pass --------------------------------------
    def make_state(self, run):
        if self.state is not None:
            raise ValueError("This FalseNegativeElimination already belongs to a method: its "
                             "pseudo-labels are that method's state. Build one per method.")
        if not run.num_examples:
            raise ValueError("IFND keeps pseudo-labels per training example: build the method "
                             "with run=RunContext(num_examples=...).")
        if max(self.cluster_counts) > run.num_examples:
            raise ValueError(f"IFND cannot make {max(self.cluster_counts)} clusters of "
                             f"{run.num_examples} examples.")
        self.run = run
        self.state = PseudoLabels(run.num_examples, len(self.cluster_counts),
                                  name="ifnd_pseudo_labels")
        return self.state

    def acceptance_rate(self, epoch):
        """alpha of 0-based `epoch` in this run (see `acceptance_rate`)."""
        return acceptance_rate(epoch, self.run.epochs, initial=self.initial_acceptance,
                               final=self.final_acceptance)

    def wants_epoch_features(self, epoch, run):
        """Before each epoch that accepts anything, unless its labels are in place (a resume)."""
        if run.epochs is None:
            raise ValueError("IFND's acceptance grows over the run: build the method with "
                             "run=RunContext(epochs=..., steps_per_epoch=...).")
        return (self.acceptance_rate(epoch) > 0.0
                and int(self.state.assigned_epoch.numpy()) != epoch)

    def on_epoch_features(self, features, ctx):
        """Clusters `features` [N, D] at every level and accepts the most confident share."""
        epoch = int(ctx.epoch)
        if epoch < 0:
            raise ValueError("IFND's schedule needs the epoch of the feature pass: build the "
                             "method with run=RunContext(steps_per_epoch=...).")
        if int(self.state.assigned_epoch.numpy()) == epoch:
            return  # already clustered before this epoch (a resumed run)
        rate = self.acceptance_rate(epoch)
        num_examples = self.state.num_examples
        if features.shape[0] != num_examples:
            raise ValueError(f"IFND keeps labels of {num_examples} examples, but the feature "
                             f"pass gave {features.shape[0]}.")
        if rate <= 0.0:
            # Nothing is accepted, so no label is read: skip the clustering.
            self.state.assign(self.state.labels.value, np.zeros(num_examples, bool), epoch)
            return
        # A new, reproducible initialisation each epoch; a resumed run draws the same one.
        results = hierarchical_kmeans(features, self.cluster_counts,
                                      max_iters=self.kmeans_max_iters,
                                      num_inits=self.kmeans_restarts, spherical=True,
                                      seed=ctx.seed * 100003 + epoch)
        labels = np.stack([np.asarray(result.assignments) for result in results])
        confidence = np.mean([np.asarray(result.scores) for result in results], axis=0)
        self.state.assign(labels, accept_most_confident(confidence, rate), epoch)

    # ---- the step -----------------------------------------------------------------
    def __call__(self, logits, ctx):
        if self.state is None:
            raise ValueError("IFND's pseudo-labels are made by the method that takes the "
                             "transform (logit_transforms=[...]); call it through one.")
        if logits.index is None or logits.column_index is None:
            raise ValueError("IFND looks up the pseudo-labels of the anchors and of every "
                             "column: it needs logits with index and column_index (SimCLR's "
                             "batch_logits, MoCo's queue_logits with its index column, NPID).")
        anchor_labels, anchor_accepted = self.state.lookup(logits.index)
        column_labels, column_accepted = self.state.lookup(logits.column_index)
        false_negatives = false_negative_mask(anchor_labels, anchor_accepted, column_labels,
                                              column_accepted)
        return eliminate_false_negatives(logits, false_negatives, anchor_accepted)

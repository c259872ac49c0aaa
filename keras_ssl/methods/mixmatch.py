"""MixMatch (Berthelot et al., NeurIPS 2019, arXiv 1905.02249).

Reference code: google-research/mixmatch `mixmatch.py` (the step, lines 40-107)
and `libml/layers.py` (MixUp, lines 154-216). The step is `mixmatch_forward` /
`mixmatch_loss`, which HierMatch reuses on its levels.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.losses import semi_supervised as losses
from keras_ssl.methods.fixmatch import SemiSupervisedMethod, learning_rate_of, mean_count
from keras_ssl.methods.outputs import Outputs

# Streams of `StepContext.seed_for` the MixUp draws use.
_PERMUTATION_STREAM, _GAMMA_STREAMS = 1, (2, 3)


@dataclasses.dataclass(frozen=True)
class MixMatchOutputs(Outputs):
    """One MixMatch step's mixed logits and targets, each a tuple with one entry per level.

    Attributes:
        labeled_logits, labeled_targets: [b, C_l] the mixed labeled rows.
        labeled_known: bool [b], rows whose own label is known at the level
            (the others were given a guessed target and count as unlabeled).
        unlabeled_logits, unlabeled_targets: [K n, C_l] the mixed unlabeled rows.
        learning_rate: the optimizer's learning rate at this step (the decay uses it).
    """

    labeled_logits: tuple = ()
    labeled_targets: tuple = ()
    labeled_known: tuple = ()
    unlabeled_logits: tuple = ()
    unlabeled_targets: tuple = ()
    learning_rate: Optional[tf.Tensor] = None


def _beta(seeds, shape, alpha):
    """Beta(alpha, alpha) draws as G1 / (G1 + G2) of two stateless gammas."""
    first, second = (tf.random.stateless_gamma(shape, seed, alpha) for seed in seeds)
    return first / (first + second)


def mixup_draws(ctx, total_rows, alpha, per_row):
    """(weights [N], permutation [N]) of one step's MixUp over the global batch.

    The weights are lambda' = max(lambda, 1 - lambda), lambda ~ Beta(alpha,
    alpha): one per row (MixMatch's `augment_pair` draws [B, 1, 1, 1]) or one
    for the batch (HierMatch's `np.random.beta(alpha, alpha)`). Every replica
    draws the same numbers from the step's seeds.
    """
    shape = [total_rows] if per_row else [1]
    weights = _beta([ctx.seed_for(s) for s in _GAMMA_STREAMS], shape, alpha)
    weights = tf.maximum(weights, 1.0 - weights) * tf.ones([total_rows])
    keys = tf.random.stateless_uniform([total_rows], ctx.seed_for(_PERMUTATION_STREAM))
    return weights, tf.argsort(keys)


def _global_positions(labeled_rows, unlabeled_rows, num_views):
    """Rows of this replica's labeled and unlabeled parts in the global [X, U_1, ..., U_K]."""
    replicas, replica = distribute.num_replicas(), distribute.replica_id()
    positions = [replica * labeled_rows + tf.range(labeled_rows)]
    for view in range(num_views):
        start = replicas * labeled_rows + (view * replicas + replica) * unlabeled_rows
        positions.append(start + tf.range(unlabeled_rows))
    return tf.concat(positions, axis=0)


def mixmatch_forward(method, batch, ctx):
    """Guess, sharpen, mix over the global batch, and classify the mixed rows.

    - Label guess: the K weak views of the unlabeled rows through the network
      in training mode as one batch (`guess_label`, mixmatch.py:40-50, runs
      each view as its own batch), the mean softmax sharpened with T, no
      gradient. Labeled rows whose label is
      unknown at a level (HierMatch's withheld ones, or a single stream's -1
      rows) get their own views' guess as target.
    - MixUp of [labeled, U_1, ..., U_K] with targets [labels, q, ..., q]
      against one permutation of all of them ("xxy.yxy", layers.py:212-216),
      drawn over the global batch so that 1 and N replicas mix alike.
    - The mixed rows through the network in training mode as one batch. The
      official code runs three interleaved batches so that each has
      representative BatchNorm statistics (mixmatch.py:71-79); one batch of
      all of them gives every row exactly those statistics. Its guess pass
      and its second and third batches do not update the moving statistics
      (they run before `skip_ops` is read, or after `post_ops`); Keras
      updates them in every training-mode pass, so here the moving
      statistics follow the guess pass and the mixed pass.
    """
    num_views = method.num_augmentations
    if len(batch.views) < num_views:
        raise ValueError(f"{type(method).__name__} needs {num_views} weak views; got "
                         f"{len(batch.views)}.")
    views = list(batch.views[:num_views])
    labeled_images, fine, index = method.labeled_rows(batch)
    if labeled_images is None:
        labeled_views = views[:1]
        labeled_images = views[0]
    else:
        labeled_views = list(batch.labeled.views[:num_views])
    labels = method.level_labels(fine, index)
    guess_labeled = method.withholds_labels or batch.labeled is None
    unlabeled_rows, labeled_rows = tf.shape(views[0])[0], tf.shape(labeled_images)[0]
    guess_inputs = views + (labeled_views if guess_labeled else [])
    guess_logits = method.logits(tf.concat(guess_inputs, axis=0), training=ctx.training)
    sizes = [unlabeled_rows] * num_views + [labeled_rows] * (len(guess_inputs) - num_views)

    unlabeled_targets, labeled_targets, labeled_known = [], [], []
    for level, logits in enumerate(guess_logits):
        parts = tf.split(logits, sizes)
        guess = losses.guess_labels(parts[:num_views], method.temperature)
        known = labels[level] >= 0
        one_hot = tf.one_hot(tf.maximum(labels[level], 0), method.level_classes[level])
        if guess_labeled:
            own_guess = losses.guess_labels(parts[num_views:], method.temperature)
            one_hot = tf.where(known[:, None], one_hot, own_guess)
        labeled_targets.append(one_hot)
        unlabeled_targets.append(guess)
        labeled_known.append(known)

    # Mixing runs over the global batch: gather the parts, mix every row the
    # same way on every replica, keep this replica's rows. No gradient flows
    # through images or targets, so the gathers cost memory only.
    gathered = tf.concat([distribute.all_gather(labeled_images)]
                         + [distribute.all_gather(view) for view in views], axis=0)
    total_rows = tf.shape(gathered)[0]
    weights, permutation = mixup_draws(ctx, total_rows, method.mixup_alpha,
                                       method.mixup_per_row)
    positions = _global_positions(labeled_rows, unlabeled_rows, num_views)
    mixed_images = tf.gather(losses.mix_rows(gathered, weights, permutation), positions)
    mixed_targets = []
    for level in range(len(guess_logits)):
        targets = tf.concat([distribute.all_gather(labeled_targets[level])]
                            + [distribute.all_gather(unlabeled_targets[level])] * num_views,
                            axis=0)
        mixed_targets.append(tf.gather(losses.mix_rows(targets, weights, permutation),
                                       positions))
    logits = method.logits(mixed_images, training=ctx.training)
    split = [(level_logits[:labeled_rows], level_logits[labeled_rows:])
             for level_logits in logits]
    return MixMatchOutputs(
        features=(), index=batch.index, label=batch.label,
        labeled_logits=tuple(x for x, _ in split),
        labeled_targets=tuple(t[:labeled_rows] for t in mixed_targets),
        labeled_known=tuple(labeled_known),
        unlabeled_logits=tuple(u for _, u in split),
        unlabeled_targets=tuple(t[labeled_rows:] for t in mixed_targets),
        learning_rate=learning_rate_of(method))


def rampup(method, step):
    """clip(step / (rampup_fraction * total steps), 0, 1); 1 when the run length is unknown."""
    total = method.run.total_steps
    if not total or method.rampup_fraction <= 0:
        return tf.constant(1.0)
    return tf.clip_by_value(tf.cast(step, tf.float32) / (method.rampup_fraction * total),
                            0.0, 1.0)


def mixmatch_loss(method, outputs, ctx):
    """Per level Lx + lambda_u r(t) Lu, summed over levels (HIERMATCH train.py:268-343)."""
    weight = method.unlabeled_weight * rampup(method, ctx.step)
    supervised, unlabeled = [], []
    for logits_x, targets_x, known, logits_u, targets_u in zip(
            outputs.labeled_logits, outputs.labeled_targets, outputs.labeled_known,
            outputs.unlabeled_logits, outputs.unlabeled_targets):
        unlabeled_count = (tf.cast(tf.shape(logits_u)[0], tf.float32)
                           + mean_count(tf.logical_not(known)))
        lx, lu = losses.mixmatch_loss(logits_x, targets_x, logits_u, targets_u, known=known,
                                      counts=(mean_count(known), unlabeled_count))
        supervised.append(lx)
        unlabeled.append(lu)
    supervised, unlabeled = tf.add_n(supervised), tf.add_n(unlabeled)
    return supervised + weight * unlabeled, {
        "supervised_loss": supervised, "unlabeled_loss": unlabeled, "unlabeled_weight": weight}


class MixMatch(SemiSupervisedMethod):
    """MixMatch: guessed, sharpened labels and MixUp of labeled with unlabeled images.

    Args:
        encoder: the backbone.
        num_classes: classes of the labeled set.
        num_augmentations: K weak views of each unlabeled image (2).
        temperature: T of the sharpening (0.5).
        mixup_alpha: alpha of Beta(alpha, alpha) (0.75, the runs' --beta).
        unlabeled_weight: lambda_u (75 on CIFAR-10, 150 on CIFAR-100).
        rampup_fraction: lambda_u ramps up linearly over this share of the
            run (1/64: the official 1024 kimg of 65536).
        weight_decay: after each step, the kernels are multiplied by
            1 - weight_decay * lr (0.02; `wd *= lr`, mixmatch.py:57, 92); train
            with the optimizer's own decay at 0.
        ema_decay: the evaluation model's EMA (0.999).

    The loss is Lx + lambda_u r(t) Lu (`losses.semi_supervised.mixmatch_loss`;
    Lu is a mean over rows and classes). Its optimizer is Adam at 0.002
    (the configs' flags). The EMA averages the trainable weights; evaluation
    reads it with the online BatchNorm statistics, as the EMA getter does.
    The view recipe gives K weak views; the labeled stream uses its first.

    Example:
    >>> model = MixMatch(encoder, num_classes=10, unlabeled_weight=75)
    """

    recipe_name = "mixmatch"
    log_names = ("unlabeled_weight",)
    # MixMatch draws one MixUp weight per row; HierMatch one per batch.
    mixup_per_row = True

    def __init__(self, encoder, *, num_classes=10, num_augmentations=2, temperature=0.5,
                 mixup_alpha=0.75, unlabeled_weight=75.0, rampup_fraction=1.0 / 64,
                 weight_decay=0.02, ema_decay=0.999, **kwargs):
        super().__init__(encoder, num_classes=num_classes, ema_decay=ema_decay, **kwargs)
        self.num_augmentations = int(num_augmentations)
        self.temperature = float(temperature)
        self.mixup_alpha = float(mixup_alpha)
        self.unlabeled_weight = float(unlabeled_weight)
        self.rampup_fraction = float(rampup_fraction)
        self.weight_decay = float(weight_decay)

    def forward(self, batch, ctx):
        return mixmatch_forward(self, batch, ctx)

    def loss(self, outputs, ctx):
        return mixmatch_loss(self, outputs, ctx)

    def shrink_online(self, outputs, ctx):
        factor = 1.0 - self.weight_decay * outputs.learning_rate
        for kernel in self.kernels():
            kernel.assign(kernel * tf.cast(factor, kernel.dtype))

"""FixMatch (Sohn et al., NeurIPS 2020, arXiv 2001.07685) and the semi-supervised base it shares.

`SemiSupervisedMethod` is the base of FixMatch, MixMatch and HierMatch: a
classifier on the encoder (one head per level of a class hierarchy; one
level for the first two), an EMA copy of encoder and heads that evaluation
uses (`classify`, `classifier_model`), and the step's bookkeeping of labels.
The FixMatch step itself is `fixmatch_forward` / `fixmatch_loss`, which
HierMatch reuses on its levels.

Reference code: google-research/fixmatch, `ablation/ab_fixmatch_ra.py`
(FixMatch with RandAugment; `fixmatch.py` is the same step with CTAugment).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.losses import semi_supervised as losses
from keras_ssl.methods.base import Method
from keras_ssl.methods.outputs import Outputs


class ClassifierHeads(keras.layers.Layer):
    """One linear head per level of a hierarchy (level 0 the finest), on the encoder's features.

    With `split_features` and L > 1 levels, the features are cut into L
    chunks of D // L (the last takes the remainder) and the head of level l
    sees chunks L-1-l .. L-1, only the first of which passes gradient back:
    the fine head sees the last chunk alone, each coarser head adds one
    chunk of its own and reads the finer ones detached, so coarse losses
    never push the fine chunk (HIERMATCH `wideresnet.py` `model_bn_3`,
    lines 122-153).

    Args:
        num_classes: classes at each level, finest first.
        split_features: the HierMatch split; otherwise every head sees all features.
    """

    def __init__(self, num_classes, split_features=False, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = tuple(int(c) for c in num_classes)
        self.split_features = bool(split_features) and len(self.num_classes) > 1
        self.dense = [keras.layers.Dense(classes, name=f"level_{level}")
                      for level, classes in enumerate(self.num_classes)]

    def _starts(self, width):
        """(first column of the head's input, end of its own chunk) for each level."""
        levels = len(self.num_classes)
        if not self.split_features:
            return [(0, width)] * levels
        chunk = width // levels
        if chunk < 1:
            raise ValueError(f"{width} features cannot be split over {levels} levels.")
        return [((levels - 1 - level) * chunk, width if level == 0 else (levels - level) * chunk)
                for level in range(levels)]

    def build(self, input_shape):
        width = int(input_shape[-1])
        for layer, (start, _) in zip(self.dense, self._starts(width)):
            layer.build((None, width - start))
        self.built = True

    def call(self, features):
        width = features.shape[-1]
        logits = []
        for layer, (start, own_end) in zip(self.dense, self._starts(width)):
            own = features[:, start:own_end]
            if own_end < width:
                own = tf.concat([own, tf.stop_gradient(features[:, own_end:])], axis=1)
            logits.append(layer(own))
        return tuple(logits)

    def get_config(self):
        return {**super().get_config(), "num_classes": list(self.num_classes),
                "split_features": self.split_features}


@dataclasses.dataclass(frozen=True)
class FixMatchOutputs(Outputs):
    """One FixMatch step's logits, each a tuple with one entry per level.

    Attributes:
        labeled_logits: [b, C_l] of the labeled rows.
        labeled_labels: int [b] their class at each level, -1 where unknown.
        weak_logits, strong_logits: [B, C_l] of the unlabeled rows' two views.
        learning_rate: the optimizer's learning rate at this step (HierMatch's decay).
    """

    labeled_logits: tuple = ()
    labeled_labels: tuple = ()
    weak_logits: tuple = ()
    strong_logits: tuple = ()
    learning_rate: Optional[tf.Tensor] = None


class SemiSupervisedMethod(Method):
    """A classifier trained from a labeled and an unlabeled stream, evaluated by its EMA copy.

    Args:
        encoder: the backbone.
        num_classes: classes at each level, finest first (one level: an int).
        level_maps: for each level after the first, an int array [C_0]
            giving the level's class of each fine class (`keras_ssl.data.hierarchy`).
        split_features: cut the features between the levels' heads (`ClassifierHeads`).
        ema_decay: decay of the EMA copy (0.999), constant, updated after
            every optimizer step; it starts equal to the online networks.
        average_statistics: whether the EMA also averages BatchNorm's moving
            statistics (HierMatch, whose EMA walks the whole `state_dict`);
            otherwise the EMA copy takes the online model's statistics, as
            FixMatch's and MixMatch's EMA getter does (`tf.train.
            ExponentialMovingAverage` of the trainable variables only, any
            other variable read from the online model).

    The labeled batch is `Batch.labeled`. Without one, the rows of the main
    stream whose label is known (>= 0) are the labeled rows, so a single
    stream with hidden labels (-1) works too.
    """

    log_names = ("supervised_loss", "unlabeled_loss")
    state_attributes = ("ema_encoder", "ema_heads")
    # Whether some labeled rows' labels are withheld at some level (HierMatch).
    withholds_labels = False

    def __init__(self, encoder, *, num_classes, level_maps=(), split_features=False,
                 ema_decay=0.999, average_statistics=False, **kwargs):
        super().__init__(encoder, **kwargs)
        self.level_classes = (int(num_classes),) if np.ndim(num_classes) == 0 else tuple(
            int(c) for c in num_classes)
        if len(level_maps) != len(self.level_classes) - 1:
            raise ValueError(f"{len(self.level_classes)} levels need "
                             f"{len(self.level_classes) - 1} level maps, got {len(level_maps)}.")
        self.level_maps = [np.asarray(m, np.int64) for m in level_maps]
        self.ema_decay = float(ema_decay)
        self.average_statistics = bool(average_statistics)
        self.heads = ClassifierHeads(self.level_classes, split_features, name="heads")
        self.heads.build((None, self.feature_dim))
        # Every replica computes the same EMA from mirrored weights (see
        # MomentumMethod.make_target): only the first replica's copy counts.
        with distribute.replicated_state_scope():
            self.ema_encoder = keras.models.clone_model(
                encoder, clone_function=lambda layer: layer.__class__.from_config(
                    {**layer.get_config(), "name": f"ema_{layer.name}"}))
            self.ema_heads = ClassifierHeads(self.level_classes, split_features,
                                             name="ema_heads")
            self.ema_heads.build((None, self.feature_dim))
        self.ema_encoder.name = "ema_encoder"
        self.ema_encoder.set_weights(encoder.get_weights())
        self.ema_heads.set_weights(self.heads.get_weights())
        # The copies are only read in inference mode; not trainable keeps
        # them out of the optimizer's variables.
        self.ema_encoder.trainable = False
        self.ema_heads.trainable = False
        online = [*self.encoder.weights, *self.heads.weights]
        copies = [*self.ema_encoder.weights, *self.ema_heads.weights]
        if [w.shape for w in online] != [w.shape for w in copies]:
            raise ValueError("The EMA copy's weights do not line up with the online model's.")
        trainable = {id(w) for w in [*self.encoder.trainable_weights,
                                     *self.heads.trainable_weights]}
        self._averaged = [(o, c) for o, c in zip(online, copies)
                          if id(o) in trainable or self.average_statistics]
        self._copied = [(o, c) for o, c in zip(online, copies)
                        if id(o) not in trainable and not self.average_statistics]
        self.built = True

    # ---- classifier ----------------------------------------------------------
    def logits(self, images, training):
        """Online logits at every level (a tuple, finest first)."""
        return self.heads(self.encoder(images, training=training))

    def classify(self, images):
        """Fine-level logits of the EMA model in inference mode: what evaluation reports."""
        return self.ema_heads(self.ema_encoder(images, training=False))[0]

    def classifier_model(self):
        """The EMA classifier as a `keras.Model` from images in [0, 1] to fine logits."""
        inputs = keras.Input(self.encoder.input_shape[1:])
        return keras.Model(inputs, self.classify(inputs), name=f"{self.name}_classifier")

    def test_top1(self, dataset):
        """Top-1 accuracy of `classify` on batches of {"image", "label"} (a run's `test_top1`)."""
        # Imported here: keras_ssl.evaluation imports the methods package.
        from keras_ssl.evaluation.features import extract_features
        from keras_ssl.evaluation.metrics import top_k_accuracy

        logits, labels = extract_features(self.classifier_model(), dataset, normalize=False)
        return top_k_accuracy(logits, labels, k=1)

    # ---- labels --------------------------------------------------------------
    def known_levels(self, index):
        """int [b], the finest level whose label each labeled row may use (0: all)."""
        return tf.zeros_like(index, tf.int64)

    def level_labels(self, fine_labels, index):
        """The labeled rows' class at each level, -1 where unknown or withheld."""
        fine = tf.cast(fine_labels, tf.int64)
        known = self.known_levels(index) if index is not None else tf.zeros_like(fine)
        labels = [fine]
        for level, mapping in enumerate(self.level_maps, start=1):
            mapped = tf.gather(tf.constant(mapping), tf.maximum(fine, 0))
            labels.append(tf.where(fine >= 0, mapped, -1))
        return tuple(tf.where(known <= level, labels[level], -1)
                     for level in range(len(labels)))

    def labeled_rows(self, batch):
        """(labeled images or None, fine labels, dataset indices) of the step's labeled rows.

        Images are None without a labeled stream: the main stream's first
        view then holds the labeled rows (those with a label >= 0).
        """
        if batch.labeled is not None:
            labeled = batch.labeled
            return labeled.views[0], labeled.label, labeled.index
        return None, batch.label, batch.index

    # ---- state ---------------------------------------------------------------
    def after_apply(self, outputs, ctx):
        decay = self.ema_decay
        for online, copy in self._averaged:
            copy.assign(copy + (1.0 - decay) * (tf.cast(online, copy.dtype) - copy))
        for online, copy in self._copied:
            copy.assign(online)
        self.shrink_online(outputs, ctx)

    def shrink_online(self, outputs, ctx):
        """A decoupled weight decay after the EMA update (MixMatch, HierMatch); none here."""

    def kernels(self):
        """The online kernels (conv and dense weights, no biases or BatchNorm parameters)."""
        return [w for w in [*self.encoder.trainable_weights, *self.heads.trainable_weights]
                if "kernel" in w.name]


def learning_rate_of(method):
    """The optimizer's learning rate at the step about to be taken (0 without an optimizer).

    Read in `forward`, before `apply_gradients` moves the step counter, so a
    decay in `after_apply` uses the rate of the step it follows.
    """
    optimizer = getattr(method, "optimizer", None)
    if optimizer is None:
        return tf.constant(0.0)
    return tf.cast(optimizer.learning_rate, tf.float32)


def mean_count(known):
    """The count a masked mean divides by on each replica: the global count / replicas.

    Each replica's loss is divided by the replica count and the gradients
    summed (`Method.train_step`), so dividing each replica's sum by this
    gives the global masked mean whatever share of known rows each holds.
    """
    count = tf.reduce_sum(tf.cast(known, tf.float32))
    return distribute.all_reduce_sum(count) / distribute.num_replicas()


def fixmatch_forward(method, batch, ctx):
    """Labeled, weak and strong images through the network as one batch, in training mode.

    The official step concatenates [labeled, weak, strong] and runs them
    together (`utils.interleave` only spreads that batch over GPUs), so
    BatchNorm normalises all three with the same batch statistics and its
    moving averages follow the whole batch (ab_fixmatch_ra.py:83-90). The
    weak view is `views[0]`, the strong one `views[-1]`.
    """
    if len(batch.views) < 2:
        raise ValueError(f"{type(method).__name__} needs a weak and a strong view; got "
                         f"{len(batch.views)} view(s).")
    weak, strong = batch.views[0], batch.views[-1]
    labeled_images, fine, index = method.labeled_rows(batch)
    parts = [weak, strong] if labeled_images is None else [labeled_images, weak, strong]
    sizes = [tf.shape(part)[0] for part in parts]
    logits = method.logits(tf.concat(parts, axis=0), training=ctx.training)
    split = [tf.split(level_logits, sizes) for level_logits in logits]
    weak_logits = tuple(parts_of_level[-2] for parts_of_level in split)
    return FixMatchOutputs(
        features=(), index=batch.index, label=batch.label,
        # Without a labeled stream the labeled rows are the weak view's.
        labeled_logits=weak_logits if labeled_images is None else tuple(p[0] for p in split),
        labeled_labels=method.level_labels(fine, index),
        weak_logits=weak_logits,
        strong_logits=tuple(parts_of_level[-1] for parts_of_level in split),
        learning_rate=learning_rate_of(method))


def fixmatch_loss(method, outputs):
    """Per level: CE of the labeled rows + lambda_u times the confidence-masked CE; summed.

    Returns (loss, logs); logs hold the sums over levels of both terms and the
    fine level's mask rate.
    """
    supervised, unlabeled = [], []
    mask_rate = None
    for labeled_logits, labels, weak, strong in zip(
            outputs.labeled_logits, outputs.labeled_labels, outputs.weak_logits,
            outputs.strong_logits):
        supervised.append(losses.masked_cross_entropy(labeled_logits, labels,
                                                      count=mean_count(labels >= 0)))
        term, rate = losses.confidence_masked_cross_entropy(weak, strong, method.threshold)
        unlabeled.append(term)
        mask_rate = rate if mask_rate is None else mask_rate
    supervised, unlabeled = tf.add_n(supervised), tf.add_n(unlabeled)
    loss = supervised + method.unlabeled_weight * unlabeled
    return loss, {"supervised_loss": supervised, "unlabeled_loss": unlabeled,
                  "mask_rate": mask_rate}


class FixMatch(SemiSupervisedMethod):
    """FixMatch: a confident prediction on a weak view is the label of a strong view.

    Args:
        encoder: the backbone.
        num_classes: classes of the labeled set.
        threshold: confidence a pseudo-label needs (0.95).
        unlabeled_weight: lambda_u (1).
        weight_decay: the official L2 term wd * sum ||kernel||^2 / 2 over the
            conv and dense kernels, added to the loss (5e-4; train with the
            optimizer's own weight decay at 0).
        ema_decay: the evaluation model's EMA (0.999).

    The step follows ab_fixmatch_ra.py:67-117: the loss is the mean
    cross-entropy of the labeled batch, plus lambda_u times the mean over
    all unlabeled rows of the strong view's cross-entropy against the weak
    view's argmax, counted where the weak view's top probability reaches
    the threshold (`losses.semi_supervised.confidence_masked_cross_entropy`);
    mu (unlabeled rows per labeled row, 7) is the ratio of the two streams'
    batch sizes (`global_batch_size` / `labeled_batch_size`). One batch of
    labeled + weak + strong runs through the network in training mode. The
    EMA averages the trainable weights; evaluation reads its copy with the
    online model's BatchNorm statistics (the official EMA getter). Logs the
    two terms and `mask_rate`, the share of confident unlabeled rows.

    Example:
    >>> model = FixMatch(encoder, num_classes=10)
    >>> model.classifier_model()(images)  # [B, 10] logits of the EMA model
    """

    recipe_name = "fixmatch"
    log_names = ("mask_rate", "weight_penalty")

    def __init__(self, encoder, *, num_classes=10, threshold=0.95, unlabeled_weight=1.0,
                 weight_decay=5e-4, ema_decay=0.999, **kwargs):
        super().__init__(encoder, num_classes=num_classes, ema_decay=ema_decay, **kwargs)
        self.threshold = float(threshold)
        self.unlabeled_weight = float(unlabeled_weight)
        self.weight_decay = float(weight_decay)

    def forward(self, batch, ctx):
        return fixmatch_forward(self, batch, ctx)

    def loss(self, outputs, ctx):
        loss, logs = fixmatch_loss(self, outputs)
        penalty = losses.l2_penalty(self.kernels())
        return loss + self.weight_decay * penalty, {**logs, "weight_penalty": penalty}

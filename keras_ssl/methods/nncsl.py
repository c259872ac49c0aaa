"""NNCSL (Kang, Fini, Nabi, Ricci, Alahari, ICCV 2023): continual semi-supervised learning.

Classes arrive in tasks; each task has a few labelled images among many
unlabelled ones, and the model must keep the classes of earlier tasks. NNCSL
is PAWS made continual plus a distillation of its classifier (reference code
kangzhiq/NNCSL @0d4dbf7d, `src/nncsl_train.py`, `src/losses.py`):

- PAWS: an unlabelled view is classified by soft nearest neighbours among
  the labelled supports of the *current task* (`mask: true`), and must agree
  with the sharpened prediction of its other view; ME-max keeps the mean
  prediction spread (`keras_ssl.losses.soft_nearest_neighbour`).
- an online linear classifier on the backbone feature, trained on the
  labelled supports over the seen classes (weight 0.005, not detached); it is
  also what evaluation reports (`classify`), as in the official `validate`.
- NND from the second task on: the previous task's frozen model classifies
  the same unlabelled views among the *past classes'* supports, and the
  current model's prediction must match it (weight 0.2).

A driver tells the model which task it is in with `start_task`, between
`fit` calls: the class masks and the task index are variables, so a traced
step reads them and never retraces for a new task; the teacher is a frozen
copy of encoder and projector refreshed there. Labels are global class ids:
the official code restricts logits to the first |seen| columns because its
classes come in natural order; here a mask over all C columns does the same
for any class order.

Choices, each from the official code (file:line at 0d4dbf7d):

- No prediction head: every released config sets `use_pred_head: false`, so
  anchors and targets are the same 128-d projector output (z = h,
  nncsl_train.py:543-547); the target side is detached.
- One forward pass per image size (resnet.py:305-319): the labelled views and
  the two large unlabelled views share BatchNorm statistics; the small
  multicrops are a second batch. The projector runs on each group too.
- The support label matrix and masks come from the batch's labels, not from
  the sampler's class interleaving (losses.py:126 relies on that order).
- `freeze_batch_norm_after_first_task`: the official loop calls
  `encoder.eval()` when it copies the teacher (nncsl_train.py:810) and never
  calls `.train()` again, so from task 2 on the whole network trains with
  BatchNorm in inference mode (moving statistics, frozen). Off by default
  (the paper describes no such thing); the `cifar10` recipe turns it on to
  reproduce the released logs.
- The feature-MSE distillation term is left out: alpha = 0 in every released
  config (nncsl_train.py:619, 638).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.backbones import accept_any_image_size
from keras_ssl.layers.projection_head import mlp_head
from keras_ssl.losses import soft_nearest_neighbour as snn_losses
from keras_ssl.methods.base import Method
from keras_ssl.methods.outputs import Outputs

_MASKED_LOGIT = -1e9


@dataclasses.dataclass(frozen=True)
class NNCSLOutputs(Outputs):
    """One NNCSL step.

    Attributes:
        anchors: [V B, P] projections of the unlabelled views (large views first).
        targets: [2 B, P] detached projections of the two large views, swapped.
        supports: [S, P] projections of the labelled views, all replicas' rows.
        support_labels: int [S] their classes (-1: not a support).
        support_logits: [s, C] this replica's classifier logits of its labelled views.
        local_support_labels: int [s] their classes.
        teacher_anchors, teacher_supports: the frozen previous model's
            projections of the same images (zeros in the first task).
        num_small_views: multicrop views per unlabelled image.
    """

    anchors: Optional[tf.Tensor] = None
    targets: Optional[tf.Tensor] = None
    supports: Optional[tf.Tensor] = None
    support_labels: Optional[tf.Tensor] = None
    support_logits: Optional[tf.Tensor] = None
    local_support_labels: Optional[tf.Tensor] = None
    teacher_anchors: Optional[tf.Tensor] = None
    teacher_supports: Optional[tf.Tensor] = None
    num_small_views: int = 0


class NNCSL(Method):
    """PAWS over the current task's supports, an online classifier, and NN distillation.

    Args:
        encoder: the backbone (ResNet-18 CIFAR stem in the paper).
        num_classes: C, classes of the whole data set (over all tasks).
        projection_hidden_dim: width of the projector's two hidden layers
            (the backbone width, 512, officially).
        projection_dim: the embedding width (128).
        temperature: tau of the soft nearest-neighbour softmax (0.1).
        sharpen_temperature: T of the target sharpening (0.25).
        label_smoothing: of the support label matrix (0.1).
        me_max_weight, online_weight, distillation_weight: 1, 0.005, 0.2.
        current_task_supports: PAWS's supports are the current task's
            (`mask: true` in the configs); False uses every seen class.
        freeze_batch_norm_after_first_task: the official code's BatchNorm in
            inference mode from the second task on (module docstring).
        synchronized_bn: the projector's BatchNorm over the global batch.

    Example:
    >>> model = NNCSL(encoder, num_classes=10)
    >>> model.start_task(1, current_classes=[2, 3], past_classes=[0, 1])
    >>> model.fit(task_dataset, epochs=250)   # labeled stream in every element

    Reference: Kang et al., "A Soft Nearest-Neighbor Framework for Continual
    Semi-Supervised Learning", ICCV 2023.
    """

    recipe_name = "multi_crop"
    mixed_image_sizes = True
    log_names = ("paws_loss", "me_max_loss", "online_loss", "distillation_loss", "online_top1")

    def __init__(self, encoder, *, num_classes, projection_hidden_dim=512, projection_dim=128,
                 temperature=0.1, sharpen_temperature=0.25, label_smoothing=0.1,
                 me_max_weight=1.0, online_weight=0.005, distillation_weight=0.2,
                 current_task_supports=True, freeze_batch_norm_after_first_task=False,
                 synchronized_bn=False, **kwargs):
        super().__init__(encoder, **kwargs)
        self.num_classes = int(num_classes)
        self.temperature = float(temperature)
        self.sharpen_temperature = float(sharpen_temperature)
        self.label_smoothing = float(label_smoothing)
        self.me_max_weight = float(me_max_weight)
        self.online_weight = float(online_weight)
        self.distillation_weight = float(distillation_weight)
        self.current_task_supports = bool(current_task_supports)
        self.freeze_batch_norm_after_first_task = bool(freeze_batch_norm_after_first_task)
        hidden = (projection_hidden_dim,) * 2
        self.projector = mlp_head(self.feature_dim, hidden, projection_dim,
                                  synchronized_bn=synchronized_bn, name="projector")
        self.classifier = keras.layers.Dense(self.num_classes, name="classifier")
        self.classifier.build((None, self.feature_dim))
        # The previous task's model, frozen: copied in `start_task`, only read
        # in inference mode (the official `pre_encoder` is in eval mode).
        # Every replica copies the same mirrored weights.
        with distribute.replicated_state_scope():
            self.teacher_encoder = accept_any_image_size(
                _frozen_copy(self.encoder, "teacher_encoder"))
            self.teacher_projector = _frozen_copy(self.projector, "teacher_projector")
            # Where training stands; written only by `start_task`, between fits.
            # Before any call every class is current (plain PAWS).
            self.task_index = self.add_weight(shape=(), dtype="int64", trainable=False,
                                              initializer="zeros", name="task_index")
            self.current_classes = self.add_weight(shape=(self.num_classes,), dtype="float32",
                                                   trainable=False, initializer="ones",
                                                   name="current_classes")
            self.seen_classes = self.add_weight(shape=(self.num_classes,), dtype="float32",
                                                trainable=False, initializer="ones",
                                                name="seen_classes")
        # A Python value: the BatchNorm mode is part of the traced step, and
        # changes at most once (`start_task` drops the traced step then).
        self.batch_norm_frozen = False
        self.built = True

    # ---- tasks -----------------------------------------------------------------
    def start_task(self, task_index, *, current_classes, past_classes=()):
        """Sets the task about to be trained; call in cross-replica context, before its fit.

        From the second task on (task_index > 0) the teacher becomes a copy
        of the model as it is now (the end of the previous task), BatchNorm
        statistics included (the official `copy.deepcopy(encoder)`). After
        restoring a checkpoint taken mid-task, call `resume_task` instead:
        the teacher comes back with the model and must not be overwritten.

        Args:
            task_index: 0-based index of the task.
            current_classes: class ids the task introduces.
            past_classes: class ids of the earlier tasks.
        """
        self._set_task(task_index, current_classes, past_classes)
        if int(task_index) > 0:
            self.teacher_encoder.set_weights(self.encoder.get_weights())
            self.teacher_projector.set_weights(self.projector.get_weights())

    def resume_task(self, task_index, *, current_classes, past_classes=()):
        """As `start_task`, keeping the teacher (restored with the model from a checkpoint)."""
        self._set_task(task_index, current_classes, past_classes)

    def _set_task(self, task_index, current_classes, past_classes):
        current = np.zeros(self.num_classes, np.float32)
        current[list(current_classes)] = 1.0
        seen = current.copy()
        seen[list(past_classes)] = 1.0
        if not current.any():
            raise ValueError("A task needs at least one class.")
        self.task_index.assign(int(task_index))
        self.current_classes.assign(current)
        self.seen_classes.assign(seen)
        frozen = self.freeze_batch_norm_after_first_task and int(task_index) > 0
        if frozen != self.batch_norm_frozen:
            self.batch_norm_frozen = frozen
            self.train_function = None  # retrace once with the new BatchNorm mode

    # ---- classifier ------------------------------------------------------------
    def classify(self, images):
        """Online classifier logits in inference mode, unseen classes masked out.

        The official evaluation (`validate`, nncsl_train.py:818-848): the
        linear head on the backbone feature, top-1 over the seen classes.
        """
        logits = self.classifier(self.encoder(images, training=False))
        return self._mask_unseen(logits)

    def _mask_unseen(self, logits):
        seen = tf.cast(self.seen_classes, tf.bool)[None, :]
        return tf.where(seen, tf.cast(logits, tf.float32), _MASKED_LOGIT)

    # ---- step ------------------------------------------------------------------
    def _embed(self, encoder, projector, groups, training):
        """(features, projections) of each group of same-size images, one pass per group."""
        features, projections = [], []
        for group in groups:
            feature = encoder(tf.concat(group, axis=0), training=training)
            features.append(feature)
            projections.append(tf.cast(projector(feature, training=training), tf.float32))
        return features, projections

    def forward(self, batch, ctx):
        views = batch.views
        if len(views) < 2:
            raise ValueError(f"NNCSL needs two large unlabelled views, got {len(views)}.")
        large, small = list(views[:2]), list(views[2:])
        if batch.labeled is not None:
            labeled = batch.labeled
            if len(labeled.views) < 2:
                raise ValueError("NNCSL's labelled stream needs two views of each image.")
            labeled_views = list(labeled.views[:2])
            labels = tf.cast(labeled.label, tf.int64)
        else:
            # One stream: its rows with a known label are the supports too.
            labeled_views, labels = [], tf.cast(batch.label, tf.int64)
        support_labels = tf.concat([labels, labels], axis=0)
        rows = tf.shape(views[0])[0]
        groups = [labeled_views + large] + ([small] if small else [])
        training = ctx.training and not self.batch_norm_frozen
        features, projections = self._embed(self.encoder, self.projector, groups, training)

        num_supports = 2 * tf.shape(labels)[0] if labeled_views else 0
        supports = projections[0][:num_supports] if labeled_views else projections[0]
        support_features = features[0][:num_supports] if labeled_views else features[0]
        anchors = tf.concat([projections[0][num_supports:], *projections[1:]], axis=0)
        # Each large view's target is the other's prediction (nncsl_train.py:583-585).
        first, second = anchors[:rows], anchors[rows:2 * rows]
        targets = tf.stop_gradient(tf.concat([second, first], axis=0))

        def teacher():
            _, teacher_projections = self._embed(self.teacher_encoder, self.teacher_projector,
                                                 groups, False)
            head = teacher_projections[0]
            return (head[:num_supports] if labeled_views else head,
                    tf.concat([head[num_supports:], *teacher_projections[1:]], axis=0))

        # The first task has no teacher: skip its forward (it has no collectives).
        teacher_supports, teacher_anchors = tf.cond(
            self.task_index.value > 0, teacher,
            lambda: (tf.zeros_like(supports), tf.zeros_like(anchors)))
        return NNCSLOutputs(
            features=tuple(features), index=batch.index, label=batch.label,
            anchors=anchors, targets=targets,
            supports=distribute.all_gather(supports),
            support_labels=distribute.all_gather(support_labels),
            support_logits=self.classifier(support_features),
            local_support_labels=support_labels,
            teacher_anchors=tf.stop_gradient(teacher_anchors),
            teacher_supports=tf.stop_gradient(distribute.all_gather(teacher_supports)),
            num_small_views=len(small))

    def loss(self, outputs, ctx):
        labels = outputs.support_labels
        known = labels >= 0
        safe = tf.maximum(labels, 0)
        current = self.current_classes if self.current_task_supports else self.seen_classes
        past = self.seen_classes * (1.0 - self.current_classes)
        paws_mask = known & (tf.gather(current, safe) > 0)
        past_mask = known & (tf.gather(past, safe) > 0)

        # PAWS + ME-max over the current task's classes (nncsl_train.py:572-595).
        matrix = snn_losses.smoothed_label_matrix(safe, current, self.label_smoothing)
        snn = lambda q, s, y, m: snn_losses.snn(  # noqa: E731
            q, s, y, temperature=self.temperature, support_mask=m)
        probabilities = snn(outputs.anchors, outputs.supports, matrix, paws_mask)
        targets = snn_losses.paws_targets(
            snn(outputs.targets, tf.stop_gradient(outputs.supports), matrix, paws_mask),
            num_small_views=outputs.num_small_views,
            sharpen_temperature=self.sharpen_temperature)
        paws = snn_losses.paws_loss(probabilities, targets)
        # ME-max of the global batch's mean: the replicas' means, averaged.
        mean = snn_losses.mean_sharpened(probabilities, self.sharpen_temperature)
        mean = distribute.all_reduce_sum(mean) / distribute.num_replicas()
        me_max = snn_losses.me_max_loss(mean)

        # Online classifier over the seen classes, both labelled views (:598-602).
        logits = self._mask_unseen(outputs.support_logits)
        local = outputs.local_support_labels
        weight = tf.cast(local >= 0, tf.float32)
        per_row = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.maximum(local, 0), logits)
        count = distribute.all_reduce_sum(tf.reduce_sum(weight)) / distribute.num_replicas()
        online = tf.reduce_sum(per_row * weight) / tf.maximum(count, 1.0)
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=1), tf.maximum(local, 0)), tf.float32)
        top1 = tf.reduce_sum(correct * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)

        # NND against the past classes' supports (:615-635); 0 in the first
        # task, where the past mask is empty and every probability is 0.
        past_matrix = snn_losses.smoothed_label_matrix(safe, past, self.label_smoothing)
        student = snn(outputs.anchors, outputs.supports, past_matrix, past_mask)
        teacher = snn(outputs.teacher_anchors, outputs.teacher_supports, past_matrix, past_mask)
        distillation = snn_losses.nearest_neighbour_distillation(teacher, student)

        loss = (paws + self.me_max_weight * me_max + self.online_weight * online
                + self.distillation_weight * distillation)
        return loss, {"paws_loss": paws, "me_max_loss": me_max, "online_loss": online,
                      "distillation_loss": distillation, "online_top1": top1}


def _frozen_copy(model, name):
    """A non-trainable clone of `model` with prefixed layer names, equal weights."""
    copy = keras.models.clone_model(
        model, clone_function=lambda layer: layer.__class__.from_config(
            {**layer.get_config(), "name": f"{name}_{layer.name}"}))
    copy.name = name
    copy.set_weights(model.get_weights())
    copy.trainable = False
    return copy

"""MIRA (Lee, Choi, Kim, Chung, "Unsupervised Visual Representation Learning via
Mutual Information Regularized Assignment", NeurIPS 2022, arXiv 2211.02284;
official code movinghoon/mira, `train.py`).

A student (encoder -> projector -> L2 norm -> cosine prototype head) predicts
pseudo-labels made from an EMA teacher's logits on the two global crops. The
pseudo-labels are the fixed point of MIRA's mutual-information-regularised
assignment (`keras_ssl.ops.mira_assign`: 30 iterations, strength beta on a
cosine schedule from 0.75 to 2/3) over the global batch. Targets from teacher
crop 0 supervise the student's other crops, targets from crop 1 theirs, and
the two terms are averaged (`swapped_prediction_loss`, temperature 0.1).
Its views are `keras_ssl.augment.mira_views`: the official DINO-style
multi-crop for ImageNet, and with no local crops its CIFAR transform. The
official encoder starts every residual branch at zero: build the backbone
with `backbones.get(..., zero_init_residual=True)` (train.py's MIRA presets
do). On the CPU protocol this doubles how much the initial targets of an
image's two views agree, which is what MIRA's self-distillation grows from.

As in the official code: the teacher is the EMA (0.99 -> 1, cosine) of the
student's encoder and projector, as it is when the official code moves it
before the teacher pass (here at the end of the step before, with the same
result: `MomentumMethod.targets_lead`); the head is
shared, not averaged (the official code copies it every step, "performs
better"); the head is weight-normalised with the gain fixed to 1
(`Prototypes(normalize_in_call=True)`) and gets no gradient in the first epoch
(`--freeze-head-epochs 1`); each crop goes through the networks on its own
(BatchNorm per crop); the teacher runs in training mode.

Deviations, and why:
- Head freeze: a tensor gate (gradient times 0 while the step context's
  `step < freeze_prototypes_steps`) instead of `p.grad = None`; the train step is traced
  once. The optimizer still applies L2 decay to the frozen rows, which only
  rescales them; the weight-normalised head ignores their length.
- beta follows its schedule as a scalar tensor computed from the step
  context's `step` (one trace serves every step), not a Python float.
- The pseudo-labels come from the gathered global batch (an XLA kernel)
  instead of all-reducing column sums inside the loop (DESIGN.md).
- Local crops go through the same encoder as global ones, which therefore
  accepts any image size (`mixed_image_sizes`; see
  `keras_ssl.backbones.accept_any_image_size`).
"""

import math

import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.layers import Prototypes, mlp_head
from keras_ssl.losses import swapped_prediction_loss
from keras_ssl.methods.momentum import MomentumMethod
from keras_ssl.methods.outputs import PrototypeOutputs
from keras_ssl.ops import mira_assign


class MIRA(MomentumMethod):
    """Mutual-information-regularised pseudo-labels from an EMA teacher.

    Args:
        encoder: student backbone (the teacher is its EMA copy).
        projection_hidden_dim: width of the projector's two hidden layers (2048).
        projection_dim: embedding width (256).
        num_prototypes: K (3000; fewer suit small batches, see methods-b.md).
        student_temperature: tau_s (0.1).
        teacher_temperature: tau_t (0.225).
        beta_initial, beta_final: regularisation strength at step 0 and at
            `total_steps`, cosine in between (0.75 -> 2/3).
        num_iters: fixed-point iterations (30).
        base_momentum, final_momentum: teacher EMA, cosine (0.99 -> 1).
        total_steps: optimizer steps of the run, for both schedules.
        freeze_prototypes_steps: steps without head gradient (official: one
            epoch; 312 at ImageNet batch 4096).
        synchronized_bn: BatchNorm over all replicas (official: SyncBN).

    Logs the EMA `momentum`, `beta`, and two statistics of the pseudo-labels
    over the global batch that the official code logs (`ent-target`,
    `mi-target`): `target_entropy`, the mean entropy of an image's targets,
    and `target_mutual_information` between image and prototype (marginal
    entropy minus `target_entropy`), the quantity MIRA's assignment raises.
    A mutual information near 0 with `target_entropy` near ln K means the
    targets have gone uniform (collapse).

    Example:
    >>> from keras_ssl.backbones import tiny_backbone
    >>> model = MIRA(tiny_backbone(), projection_hidden_dim=16, projection_dim=8,
    ...              num_prototypes=10)
    >>> tuple(model.prototypes.kernel.shape)
    (10, 8)
    """

    recipe_name = "mira"
    log_names = ("beta", "target_entropy", "target_mutual_information")
    state_attributes = ("target_encoder", "target_projector")
    mixed_image_sizes = True
    targets_lead = True  # the official code moves the teacher before its pass

    def __init__(self, encoder, *, projection_hidden_dim=2048, projection_dim=256,
                 num_prototypes=3000, student_temperature=0.1, teacher_temperature=0.225,
                 beta_initial=0.75, beta_final=2.0 / 3.0, num_iters=30,
                 base_momentum=0.99, final_momentum=1.0, total_steps=None,
                 freeze_prototypes_steps=312, synchronized_bn=True, **kwargs):
        super().__init__(encoder, base_momentum=base_momentum,
                         final_momentum=final_momentum, total_steps=total_steps, **kwargs)
        for beta in (beta_initial, beta_final):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"beta must be in [0, 1), got {beta}.")
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature
        self.beta_initial = beta_initial
        self.beta_final = beta_final
        self.num_iters = num_iters
        self.freeze_prototypes_steps = freeze_prototypes_steps
        hidden = (projection_hidden_dim, projection_hidden_dim)
        # The official heads are PyTorch nn.Linear layers at their default
        # initialisation; their scale sets how fast SGD turns them.
        self.projector = mlp_head(self.feature_dim, hidden, projection_dim,
                                  synchronized_bn=synchronized_bn, pytorch_linear_init=True,
                                  name="projector")
        self.prototypes = Prototypes(num_prototypes, normalize_in_call=True,
                                     pytorch_linear_init=True, name="prototypes")
        self.prototypes.build((None, projection_dim))
        self.target_encoder = self.make_target(self.encoder, "target_encoder")
        self.target_projector = self.make_target(self.projector, "target_projector")
        self.built = True

    def _scheduled_beta(self):
        return bool(self.total_steps) and self.beta_initial != self.beta_final

    def beta_at(self, step):
        """beta at optimizer step `step`: official `beta_momentum` (a tensor)."""
        if not self._scheduled_beta():
            return tf.constant(self.beta_initial, tf.float32)
        progress = tf.minimum(tf.cast(step, tf.float32) / float(self.total_steps), 1.0)
        cosine = (tf.cos(math.pi * progress) + 1.0) / 2.0
        return self.beta_final - (self.beta_final - self.beta_initial) * cosine

    def pseudo_labels(self, teacher_logits, beta):
        """This replica's rows of the assignment computed on the global batch."""
        logits = tf.cast(teacher_logits, tf.float32) / self.teacher_temperature
        local_batch = tf.shape(logits)[0]
        labels = mira_assign(distribute.all_gather(tf.stop_gradient(logits)), beta,
                             self.num_iters)
        return tf.stop_gradient(distribute.local_rows(labels, local_batch))

    def _logits(self, encoder, projector, images, training, frozen=None):
        embeddings = tf.math.l2_normalize(tf.cast(projector(
            encoder(images, training=training), training=training), tf.float32), axis=1)
        return embeddings, self.prototypes(embeddings, frozen=frozen)

    def forward(self, batch, ctx):
        views, training = batch.views, ctx.training
        if len(views) < 2:
            raise ValueError(f"MIRA needs at least 2 crops, got {len(views)}.")
        frozen = ctx.step < self.freeze_prototypes_steps
        # Each crop is its own batch, student and teacher, as in the official code.
        features = self.encode_views(views, training, together=False)
        embeddings, scores = [], []
        for f in features:
            z = tf.math.l2_normalize(tf.cast(self.projector(f, training=training),
                                             tf.float32), axis=1)
            embeddings.append(z)
            scores.append(self.prototypes(z, frozen=frozen))
        # The teacher shares the student's head (the official code copies it
        # after each EMA update); nothing of the teacher pass is differentiated.
        beta = self.beta_at(ctx.step)
        assignments = tuple(
            self.pseudo_labels(tf.stop_gradient(self._logits(
                self.target_encoder, self.target_projector, v, training)[1]), beta)
            for v in views[:2])
        return PrototypeOutputs(features=features, embeddings=tuple(embeddings),
                                scores=tuple(scores), assignments=assignments,
                                index=batch.index, label=batch.label)

    def loss(self, outputs, ctx):
        loss = swapped_prediction_loss(outputs.scores, outputs.assignments,
                                       temperature=self.student_temperature)
        # Per teacher crop over the global batch, then averaged, as the official logs.
        statistics = [assignment_statistics(distribute.all_gather(a))
                      for a in outputs.assignments]
        entropy = tf.add_n([s[0] for s in statistics]) / len(statistics)
        mutual_information = tf.add_n([s[1] for s in statistics]) / len(statistics)
        return loss, {"beta": self.beta_at(ctx.step), "target_entropy": entropy,
                      "target_mutual_information": mutual_information}


def assignment_statistics(probabilities):
    """(mean row entropy, mutual information) of soft assignments [B, K].

    The mutual information between the row (image) and the column
    (prototype) under a uniform choice of row is the entropy of the mean row
    minus the mean row entropy: 0 when every row is the same distribution,
    ln K when rows are one-hot and spread evenly over the K columns.
    """
    def entropy(p, axis):
        return -tf.reduce_sum(p * tf.math.log(p + 1e-10), axis=axis)

    probabilities = tf.cast(probabilities, tf.float32)
    row_entropy = tf.reduce_mean(entropy(probabilities, axis=1))
    return row_entropy, entropy(tf.reduce_mean(probabilities, axis=0), axis=0) - row_entropy

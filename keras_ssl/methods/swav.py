"""SwAV (Caron et al., "Unsupervised Learning of Visual Features by Contrasting
Cluster Assignments", NeurIPS 2020, arXiv 2006.09882; official code
facebookresearch/swav, `main_swav.py` and `src/resnet50.py`).

Each crop is projected to a unit-norm embedding z and scored against unit-norm
prototypes C (s = z C^T). The codes of the two global crops come from
Sinkhorn-Knopp on the scores of the global batch (epsilon 0.05, 3 iterations,
no gradient); every other crop predicts them through softmax(s / 0.1)
(`keras_ssl.losses.swapped_prediction_loss`, averaged as the official loop).

Deviations from the official code, and why:
- Frozen prototypes: the official code sets their gradients to None for the
  first `freeze_prototypes_niters` iterations, so the optimizer skips them. A
  Keras train step is traced once, so a Python condition on the step would be
  frozen at trace time; instead the prototypes' gradient is multiplied by 0
  while the step context's `step < freeze_prototypes_steps` (a tensor
  condition, `Prototypes(frozen=...)`). The optimizer still visits them: L2
  decay and the momentum it feeds move the rows only along themselves
  (radially), which the renormalisation after the step removes, so the
  prototypes stay put.
- Prototypes are renormalised after each step (`after_apply`) rather than at
  the start of the next one; the weights every step uses are the same.
- Queue: the official per-GPU queues of local embeddings are one replicated
  queue of all-gathered embeddings per assignment crop (the same rows in all),
  a ring buffer of `queue_length` rows rather than a shifted tensor truncated to
  a multiple of the global batch. Sinkhorn treats samples symmetrically, so the
  row order does not matter. As in the official code it is filled from
  `queue_start_steps` on and used once full.
- Sinkhorn runs on the gathered scores (an XLA kernel, `keras_ssl.ops.sinkhorn`)
  instead of all-reducing inside its loop (DESIGN.md: no collectives in XLA).
- Local crops are smaller than global ones and go through the same encoder,
  which therefore accepts any image size (`mixed_image_sizes`; see
  `keras_ssl.backbones.accept_any_image_size`).
"""

import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.layers import Prototypes, RingQueue, mlp_head
from keras_ssl.losses import swapped_prediction_loss
from keras_ssl.methods.base import Method
from keras_ssl.methods.outputs import PrototypeOutputs
from keras_ssl.ops import sinkhorn


class SwAV(Method):
    """Swapping assignments between multiple views of the same image.

    Args:
        encoder: backbone.
        projection_hidden_dim: hidden width of the head (2048).
        projection_dim: embedding width (128).
        num_prototypes: K (3000).
        temperature: tau of the predicted softmax (0.1).
        sinkhorn_epsilon: entropy regularisation of the codes (0.05; the
            official README suggests 0.03 against collapse).
        sinkhorn_iters: Sinkhorn-Knopp iterations (3).
        num_assign_views: leading crops whose codes are predicted (2: the global
            crops, `crops_for_assign=[0, 1]`).
        freeze_prototypes_steps: steps during which the prototypes get no
            gradient (official: 313 at batch 4096 and 5005 at batch 256, about
            one ImageNet epoch).
        queue_length: embeddings of earlier batches kept per assignment crop for
            Sinkhorn (0: no queue; official batch-256 recipe 3840).
        queue_start_steps: step from which the queue is filled (official:
            epoch 15 at batch 256); it is used once full.
        synchronized_bn: BatchNorm of the head over all replicas (official:
            sync-BN everywhere).

    The views are `multi_crop` views: global crops first, then local crops.
    Crops of one size share a backbone pass and all crops share one head
    pass, as in the official `ResNet.forward` (src/resnet50.py), so BatchNorm
    statistics span them. Logs `queue_in_use` (the fraction of steps whose
    codes used the queue).

    Example:
    >>> from keras_ssl.backbones import tiny_backbone
    >>> model = SwAV(tiny_backbone(), projection_hidden_dim=16, projection_dim=8,
    ...              num_prototypes=10)
    >>> tuple(model.prototypes.kernel.shape)
    (10, 8)
    """

    recipe_name = "multi_crop"
    log_names = ("queue_in_use",)
    mixed_image_sizes = True

    def __init__(self, encoder, *, projection_hidden_dim=2048, projection_dim=128,
                 num_prototypes=3000, temperature=0.1, sinkhorn_epsilon=0.05,
                 sinkhorn_iters=3, num_assign_views=2, freeze_prototypes_steps=313,
                 queue_length=0, queue_start_steps=0, synchronized_bn=True, **kwargs):
        super().__init__(encoder, **kwargs)
        self.temperature = temperature
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.sinkhorn_iters = sinkhorn_iters
        self.num_assign_views = num_assign_views
        self.freeze_prototypes_steps = freeze_prototypes_steps
        self.queue_length = queue_length
        self.queue_start_steps = queue_start_steps
        self.projector = mlp_head(self.feature_dim, (projection_hidden_dim,),
                                  projection_dim, synchronized_bn=synchronized_bn,
                                  name="projector")
        self.prototypes = Prototypes(num_prototypes, name="prototypes")
        self.prototypes.build((None, projection_dim))
        self.queues = [RingQueue(queue_length, projection_dim, seed=i, name=f"queue{i}")
                       for i in range(num_assign_views if queue_length else 0)]
        with distribute.replicated_state_scope():
            # Rows written since queue_start_steps, capped at queue_length.
            self.queue_filled = self.add_weight(shape=(), dtype="int64", trainable=False,
                                                initializer="zeros", name="queue_filled")
        self.built = True

    def state_variables(self):
        # The queues are a list, which `state_attributes` cannot name. Their
        # rows and the fill count are listed; a queue's pointer is left out,
        # as it comes back to where it was whenever the queue length is a
        # multiple of the global batch (as in the official recipes).
        if not self.queue_length:
            return []
        return [queue.keys for queue in self.queues] + [self.queue_filled]

    def queue_in_use(self):
        """Whether the codes of this step use the queue (a boolean tensor)."""
        if not self.queue_length:
            return tf.constant(False)
        return self.queue_filled >= self.queue_length

    def forward(self, batch, ctx):
        views, training = batch.views, ctx.training
        if len(views) < max(2, self.num_assign_views):
            raise ValueError(f"SwAV needs at least {max(2, self.num_assign_views)} "
                             f"crops, got {len(views)}.")
        features = self.encode_views(views, training)
        # One head pass over every crop (BatchNorm over all of them), as the
        # official model runs its head on the concatenated backbone outputs.
        embeddings = tf.math.l2_normalize(tf.cast(self.projector(
            tf.concat(features, axis=0), training=training), tf.float32), axis=1)
        frozen = ctx.step < self.freeze_prototypes_steps
        scores = tuple(tf.split(self.prototypes(embeddings, frozen=frozen), len(views)))
        codes = tuple(self.assign_codes(scores[i], i)
                      for i in range(self.num_assign_views))
        return PrototypeOutputs(features=features,
                                embeddings=tuple(tf.split(embeddings, len(views))),
                                scores=scores, assignments=codes, index=batch.index,
                                label=batch.label)

    def assign_codes(self, scores, view):
        """Sinkhorn codes of this replica's rows of assignment crop `view`.

        The kernel sees the global batch (and, once the queue is full, the
        queue's scores against the current prototypes in front of it); the
        local rows are sliced out afterwards.
        """
        local_batch = tf.shape(scores)[0]
        scores = distribute.all_gather(tf.stop_gradient(scores))
        run = lambda s: sinkhorn(s, num_iters=self.sinkhorn_iters,  # noqa: E731
                                 epsilon=self.sinkhorn_epsilon)
        if self.queue_length:
            queue_scores = tf.matmul(self.queues[view].read(),
                                     self.prototypes.kernel.value, transpose_b=True)
            codes = tf.cond(
                self.queue_in_use(),
                lambda: run(tf.concat([queue_scores, scores], axis=0))[-tf.shape(scores)[0]:],
                lambda: run(scores))
        else:
            codes = run(scores)
        return tf.stop_gradient(distribute.local_rows(codes, local_batch))

    def loss(self, outputs, ctx):
        loss = swapped_prediction_loss(
            outputs.scores, outputs.assignments, temperature=self.temperature,
            target_views=tuple(range(self.num_assign_views)))
        return loss, {"queue_in_use": tf.cast(self.queue_in_use(), tf.float32)}

    def after_apply(self, outputs, ctx):
        self.prototypes.normalize()
        if not self.queue_length:
            return
        # Every replica writes the gathered embeddings: identical queues.
        # Rows written before the start step are overwritten before the queue
        # counts as full, so only the counter needs the condition.
        for queue, embeddings in zip(self.queues, outputs.embeddings):
            queue.write(embeddings)
        started = tf.cast(ctx.step >= self.queue_start_steps, tf.int64)
        written = tf.cast(tf.shape(outputs.embeddings[0])[0] * distribute.num_replicas(),
                          tf.int64)
        self.queue_filled.assign(tf.minimum(self.queue_filled + started * written,
                                            self.queue_length))

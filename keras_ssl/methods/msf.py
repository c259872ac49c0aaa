"""MSF: Mean Shift for self-supervised learning (Koohpayegani, Tejankar, Pirsiavash, ICCV 2021)."""

import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.layers import RingQueue, mlp_head
from keras_ssl.losses import mean_shift_loss
from keras_ssl.methods.momentum import MomentumMethod
from keras_ssl.methods.outputs import DistillationOutputs
from keras_ssl.ops import topk_neighbors


class MSF(MomentumMethod):
    """Mean shift: pull the prediction towards the target's neighbours in a memory bank.

    A BYOL-like online encoder + projector + predictor sees the strong view
    (view 0); an EMA copy of encoder + projector sees the weak view (view 1)
    and gives the target t. The memory bank is a FIFO queue of past targets.
    The loss regresses the normalised prediction q to the `topk` bank entries
    nearest to t (cosine), averaged: mean_u (2 - 2 q.u). The search uses t,
    never q, and the bank includes the current global batch, so t itself is
    the first neighbour (with topk=1 MSF is BYOL with a one-sided loss).

    Args:
        encoder: online backbone.
        projection_hidden_dim: None for 2 x feature width (official `get_mlp`
            sizes: 2048 -> 4096 -> 512 on ResNet-50, 512 -> 1024 -> 128 on
            ResNet-18).
        projection_dim: None for feature width / 4.
        prediction_hidden_dim: None for 2 x feature width.
        momentum: EMA of the target, constant (0.99, official).
        queue_size: memory-bank rows (128,000: official default and CMSF;
            1,024,000 in `run_msf.sh`). Must be at least the global batch.
        topk: neighbours per target (5: `run_msf.sh`, CMSF; the README
            command uses 10).
        synchronized_bn: BatchNorm statistics of the heads over the global
            batch.
        seed: seed of the random unit-norm initial bank rows.

    Example:
    >>> from keras_ssl.backbones import tiny_backbone
    >>> model = MSF(tiny_backbone(), queue_size=64, topk=5)
    >>> int(model.queue.keys.shape[0])
    64

    Order of one step, as in `train_msf.py::MeanShift.forward`: the target
    pass, with the target as the official EMA update at the start of the
    step leaves it (here that update runs at the end of the step before:
    `MomentumMethod.targets_lead`); the current targets of every replica
    (all-gathered) are written into a copy of the bank at the queue pointer
    before the search ("enqueue before search", essential per the notes);
    after the optimizer step the same rows are written into the queue
    variable itself (`after_apply`). Every replica therefore searches the
    same bank.

    Deviations from the official code (UMBCvision/MSF @130191c4):
    - The official target pass shuffles the batch (ShuffleBN). Under its
      DataParallel that changes per-GPU BatchNorm batches; here the target
      runs on each replica's unshuffled rows. MSF's loss is not contrastive,
      so there is no positive-pair leak for the shuffle to stop (BYOL has none).
    - The heads' BatchNorm is synchronized by default (`synchronized_bn`), so
      results do not depend on the replica count; the official heads use
      per-GPU `BatchNorm1d`.
    - The official `mem_bank_size % batch_size == 0` assertion is not needed:
      the queue wraps around.
    - Purity (the share of neighbours of the same class) is not logged: it
      needs the class of every bank row, which self-supervised training does
      not have (`SupervisedCMSF` logs it). `neighbor_similarity`, the mean
      cosine of targets to their neighbours, is logged instead.
    """

    recipe_name = "msf"
    log_names = ("neighbor_similarity",)
    state_attributes = ("target_encoder", "target_projector", "queue")
    targets_lead = True  # the official code moves the target before its pass
    # Columns the bank keeps beside each target (`RingQueue`): none for MSF.
    queue_columns = ()

    def __init__(self, encoder, *, projection_hidden_dim=None, projection_dim=None,
                 prediction_hidden_dim=None, momentum=0.99, queue_size=128000, topk=5,
                 synchronized_bn=True, seed=0, **kwargs):
        super().__init__(encoder, base_momentum=momentum, **kwargs)
        if not 1 <= topk <= queue_size:
            raise ValueError(f"topk={topk} must be between 1 and queue_size={queue_size}.")
        self.momentum = momentum
        self.topk = topk
        hidden = projection_hidden_dim or 2 * self.feature_dim
        self.projection_dim = projection_dim or max(self.feature_dim // 4, 1)
        self.projector = mlp_head(self.feature_dim, (hidden,), self.projection_dim,
                                  synchronized_bn=synchronized_bn, name="projector")
        self.predictor = mlp_head(self.projection_dim,
                                  (prediction_hidden_dim or 2 * self.feature_dim,),
                                  self.projection_dim, synchronized_bn=synchronized_bn,
                                  name="predictor")
        self.target_encoder = self.make_target(self.encoder, "target_encoder")
        self.target_projector = self.make_target(self.projector, "target_projector")
        self.queue = RingQueue(queue_size, self.projection_dim, columns=self.queue_columns,
                               seed=seed, name="queue")
        self.built = True

    def forward(self, batch, ctx):
        training = ctx.training
        query_view, target_view = batch.views[0], batch.views[1]
        features = self.encoder(query_view, training=training)
        projections = self.projector(features, training=training)
        predictions = self.predictor(projections, training=training)
        # The target network is moved by EMA only; training=True so its
        # BatchNorm uses batch statistics, as the official model.train().
        targets = tf.stop_gradient(self.target_projector(
            self.target_encoder(target_view, training=training), training=training))
        return DistillationOutputs(features=(features,), projections=(projections,),
                                   predictions=(predictions,), targets=(targets,),
                                   index=batch.index, label=batch.label)

    # ---- the bank ------------------------------------------------------------
    def normalized_targets(self, outputs):
        return tf.math.l2_normalize(tf.cast(outputs.targets[0], tf.float32), axis=1)

    def column_values(self, outputs):
        """This replica's value of each of the bank's `queue_columns`, by name."""
        return {}

    def bank_after(self, outputs):
        """The bank (`QueueContents`) as this step's write will leave it, as tensors."""
        return self.queue.peek_with(self.normalized_targets(outputs),
                                    **self.column_values(outputs))

    def search(self, outputs, contents=None):
        """(bank with the current global batch, neighbours [B, k], their similarities).

        `contents` is `bank_after(outputs)` when the caller has it already.
        """
        bank = (contents or self.bank_after(outputs)).keys
        neighbors, similarities = topk_neighbors(self.normalized_targets(outputs), bank,
                                                 self.topk)
        return bank, neighbors, similarities

    def loss(self, outputs, ctx):
        bank, neighbors, similarities = self.search(outputs)
        loss = mean_shift_loss(outputs.predictions[0], bank, neighbors)
        return loss, {"neighbor_similarity": tf.reduce_mean(similarities)}

    def after_apply(self, outputs, ctx):
        super().after_apply(outputs, ctx)  # the target, for the next step
        # Every replica writes the whole global batch, so the replicated
        # banks stay identical.
        targets = distribute.all_gather(self.normalized_targets(outputs))
        columns = {name: distribute.all_gather(value)
                   for name, value in self.column_values(outputs).items()}
        self.write_bank(targets, columns, ctx)

    def write_bank(self, targets, columns, ctx):
        """Writes the all-gathered normalised `targets` and their `columns` into the bank."""
        self.queue.write(targets, gathered=True, **columns)

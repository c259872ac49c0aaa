"""CMSF: Constrained Mean Shift (Navaneet, Koohpayegani, Tejankar, Pirsiavash, ECCV 2022)."""

import keras
import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.losses import mean_shift_loss
from keras_ssl.methods.msf import MSF
from keras_ssl.ops import kmeans, topk_neighbors

CONSTRAINTS = ("previous_epoch", "pseudo_label")


class CMSF(MSF):
    """Mean shift whose neighbours must also satisfy a constraint; averages both losses.

    The loss is (L(constrained top-k) + L(unconstrained top-k)) / 2, each an
    MSF loss (`keras_ssl.losses.mean_shift_loss`). Both searches use the
    target t against the bank with the current global batch in it. The bank
    also stores each row's dataset index (its `index` column), and a per-example
    pool stores target embeddings, so the constraint can look rows up.

    Implemented variants (`constraint`):
    - "previous_epoch" (CMSF-2Q, `UCDvision/CMSF/self_supervised/
      train_cmsf_self.py`): the pool keeps the two latest targets of every
      example. The constrained top-k is taken, by current similarity, among
      the top-`constraint_topk` (k') bank rows found by comparing the
      anchor's previous-epoch embedding with the rows' previous-epoch
      embeddings (the embedding before each example's latest write).
    - "pseudo_label" (CMSF-KM, `UMBCvision/CMSF/self_supervised/
      train_msf_km.py`): the constrained top-k is taken among bank rows whose
      example has the anchor's pseudo-label. Labels start at 0 (no constraint,
      as in the official code) and are refreshed by k-means (`kmeans`,
      k-means++ start, `cluster_iters` Lloyd steps) over the pool of latest
      embeddings at the end of every `cluster_every_steps`-th step, after
      that step's pool write (by default the epoch length: the official code
      clusters after every epoch), or whenever `recluster()` or
      `set_pseudo_labels()` is called.

    The supervised CMSF is `SupervisedCMSF` below. Left out: the
    semi-supervised CMSF (`semi_supervised/train_pseudo_cmsf.py`), whose
    pseudo-labels come from a classifier retrained on the labelled subset
    twice per epoch; `set_pseudo_labels` accepts labels from any source, so
    such a classifier could feed them, but its training loop is not here.

    Args:
        encoder: online backbone.
        num_examples: training-set size N (the per-example pool and labels);
            None takes it from the run context.
        constraint: "previous_epoch" (2Q) or "pseudo_label" (KM).
        constraint_topk: k' of the 2Q constraint (5 in `run_selfsup.sh`; the
            script's default is 10).
        num_clusters: k-means clusters of the KM variant (50,000 for ImageNet).
        cluster_every_steps: steps between k-means refreshes (0: never; then
            call `recluster()` yourself; None: once per epoch, as the official
            code re-clusters every epoch, when the epoch length is known).
        steps_per_epoch: optimizer steps per epoch; None takes it from the run
            context.
        cluster_iters: Lloyd iterations (20, as the official faiss call).
        **kwargs: MSF's (momentum, queue_size, topk, heads, ...).

    Example:
    >>> from keras_ssl.backbones import tiny_backbone
    >>> model = CMSF(tiny_backbone(), num_examples=100, queue_size=64)
    >>> tuple(model.pool.shape[:2])
    (2, 100)

    Deviations and their reasons:
    - The official 2Q pool starts as unnormalised `randn`; here as Gaussian
      rows of about unit norm (std 1/sqrt(d)): the same random first-epoch
      constraint, on the same scale as the real embeddings.
    - Bank rows never written hold no example (index column -1). The
      official `index_queue` starts at -1 too, which indexes the last
      example; here such rows are never part of a constrained set.
    - The official constrained search pushes excluded rows to distance +5 and
      still averages over them when fewer than k rows are allowed (KM, a
      small cluster); here those slots get weight 0, so an excluded row never
      enters the loss. With the anchor itself always allowed, at least one
      neighbour remains.
    - k-means runs in-graph on the pool (fine at CIFAR scale); ImageNet's
      50,000 clusters of 1.28M rows need an external k-means (the official
      code uses faiss on GPUs) that calls `set_pseudo_labels`.
    - The MSF deviations (no ShuffleBN, synchronized head BN) apply too.
    """

    log_names = ("constrained_similarity",)
    queue_columns = ("index",)  # the example of each bank row
    # Per-example state (the pool of target embeddings the constraint is
    # computed from, its slots, the pseudo-labels); a constraint on the
    # classes the batch brings needs none.
    keeps_pool = True

    def __init__(self, encoder, *, num_examples=None, constraint="previous_epoch",
                 constraint_topk=5, num_clusters=100, cluster_every_steps=None,
                 cluster_iters=20, steps_per_epoch=None, **kwargs):
        super().__init__(encoder, **kwargs)
        if constraint not in CONSTRAINTS:
            raise ValueError(f"constraint={constraint!r} is not one of {CONSTRAINTS}.")
        if constraint == "previous_epoch" and constraint_topk < self.topk:
            raise ValueError(f"constraint_topk={constraint_topk} must be >= topk={self.topk}.")
        self.num_examples = num_examples or self.run.num_examples
        self.constraint = constraint
        self.constraint_topk = constraint_topk
        self.num_clusters = num_clusters
        if cluster_every_steps is None:
            cluster_every_steps = steps_per_epoch or self.run.steps_per_epoch or 0
        self.cluster_every_steps = cluster_every_steps
        self.cluster_iters = cluster_iters
        if self.keeps_pool:
            self._make_pool()

    def _make_pool(self):
        if not self.num_examples:
            raise ValueError(f"{type(self).__name__} keeps an embedding per training "
                             "example: give num_examples or "
                             "run=RunContext(num_examples=...).")
        num_slots = 2 if self.constraint == "previous_epoch" else 1
        dim = self.projection_dim
        with distribute.replicated_state_scope():
            self.pool = self.add_weight(
                shape=(num_slots, self.num_examples, dim), trainable=False,
                initializer=keras.initializers.RandomNormal(stddev=dim ** -0.5, seed=1),
                name="pool")
            # 2Q: the slot the next write of each example goes to, which is
            # also the slot holding its older embedding.
            self.pool_slot = self.add_weight(shape=(self.num_examples,), dtype="int32",
                                             trainable=False, initializer="zeros",
                                             name="pool_slot")
            self.pseudo_labels = self.add_weight(shape=(self.num_examples,), dtype="int32",
                                                 trainable=False, initializer="zeros",
                                                 name="pseudo_labels")

    def state_variables(self):
        variables = super().state_variables()
        if self.keeps_pool:
            variables.append(self.pool)
            if self.constraint == "previous_epoch":
                variables.append(self.pool_slot)
            elif self.cluster_every_steps:
                variables.append(self.pseudo_labels)
        return variables

    # ---- pseudo-labels (KM) --------------------------------------------------
    def set_pseudo_labels(self, labels):
        self.pseudo_labels.assign(tf.cast(labels, tf.int32))

    def cluster_pool(self):
        """KM: k-means assignments of the latest embedding of every example."""
        if self.constraint != "pseudo_label":
            raise ValueError("Pseudo-labels belong to constraint='pseudo_label'.")
        assignments, _ = kmeans(self.pool.value[0], self.num_clusters, self.cluster_iters,
                                init="kmeans++")
        return assignments

    def recluster(self):
        """KM: sets the pseudo-labels to `cluster_pool()` (e.g. from a callback)."""
        self.set_pseudo_labels(self.cluster_pool())

    # ---- constraints -----------------------------------------------------------
    def column_values(self, outputs):
        return {"index": outputs.index}

    def _slots_after(self, global_indices):
        """pool_slot after this batch's writes toggle it (2Q)."""
        slot = self.pool_slot.value
        return tf.tensor_scatter_nd_update(
            slot, global_indices[:, None], 1 - tf.gather(slot, global_indices))

    def _previous_epoch_mask(self, indices, global_indices, bank_index, written):
        # After this batch is written, the older slot of every example holds
        # the embedding before its latest one. For the batch's own examples
        # that is the previously latest write, still in the pool now.
        slots = self._slots_after(global_indices)

        def previous(example):
            where = tf.stack([tf.cast(tf.gather(slots, example), tf.int64), example], axis=1)
            return tf.gather_nd(self.pool.value, where)

        bank_previous = previous(tf.maximum(bank_index, 0))
        batch = tf.shape(indices)[0]
        allowed = tf.broadcast_to(written[None, :], [batch, self.queue.size])
        rows, similarities = topk_neighbors(previous(indices), bank_previous,
                                            self.constraint_topk, mask=allowed)
        # Rows are distinct within a query, so the scatter has no collisions;
        # a slot filled with an unwritten row (similarity -inf) stays False.
        positions = tf.stack([tf.repeat(tf.range(batch), self.constraint_topk),
                              tf.reshape(rows, [-1])], axis=1)
        return tf.tensor_scatter_nd_update(
            tf.zeros([batch, self.queue.size], tf.bool), positions,
            tf.reshape(tf.math.is_finite(similarities), [-1]))

    def _pseudo_label_mask(self, indices, bank_index, written):
        labels = self.pseudo_labels.value
        bank_labels = tf.where(written, tf.gather(labels, tf.maximum(bank_index, 0)), -1)
        return tf.gather(labels, indices)[:, None] == bank_labels[None, :]

    def allowed_rows(self, outputs, contents):
        """[B, M] bool: the rows each anchor may take in `contents`, the bank with this batch."""
        indices = tf.cast(outputs.index, tf.int64)
        bank_index = contents.index
        written = bank_index >= 0
        if self.constraint == "previous_epoch":
            return self._previous_epoch_mask(indices, distribute.all_gather(indices),
                                             bank_index, written)
        return self._pseudo_label_mask(indices, bank_index, written)

    def constrained_search(self, outputs):
        """The unconstrained search of MSF plus the constrained one.

        Returns (bank, neighbors, similarities, constrained,
        constrained_similarities, mask): `mask` [B, M] marks the rows each
        target may take; a constrained slot with similarity -inf had no
        allowed row left and is dropped from the loss.
        """
        contents = self.bank_after(outputs)
        bank, neighbors, similarities = self.search(outputs, contents)
        mask = self.allowed_rows(outputs, contents)
        constrained, constrained_similarities = topk_neighbors(
            self.normalized_targets(outputs), bank, self.topk, mask=mask)
        return bank, neighbors, similarities, constrained, constrained_similarities, mask

    def constrained_terms(self, outputs):
        """The constrained MSF loss and the search logs of one step.

        Returns (loss, logs, bank, neighbors, mask): the unconstrained
        `neighbors` [B, k] and the constraint `mask` [B, M] are there for the
        terms a variant adds.
        """
        (bank, neighbors, similarities, constrained, constrained_similarities,
         mask) = self.constrained_search(outputs)
        allowed = tf.math.is_finite(constrained_similarities)
        loss = mean_shift_loss(outputs.predictions[0], bank, constrained, allowed)
        mean_allowed = (tf.reduce_sum(tf.where(allowed, constrained_similarities, 0.0))
                        / tf.reduce_sum(tf.cast(allowed, tf.float32)))
        logs = {"neighbor_similarity": tf.reduce_mean(similarities),
                "constrained_similarity": mean_allowed}
        return loss, logs, bank, neighbors, mask

    def loss(self, outputs, ctx):
        constrained_loss, logs, bank, neighbors, _ = self.constrained_terms(outputs)
        unconstrained_loss = mean_shift_loss(outputs.predictions[0], bank, neighbors)
        return 0.5 * (constrained_loss + unconstrained_loss), logs

    # ---- state -------------------------------------------------------------------
    def write_bank(self, targets, columns, ctx):
        if self.keeps_pool:
            indices = tf.cast(columns["index"], tf.int64)
            slots = (tf.gather(self.pool_slot.value, indices)
                     if self.constraint == "previous_epoch"
                     else tf.zeros_like(indices, tf.int32))
            self.pool.assign(tf.tensor_scatter_nd_update(
                self.pool.value, tf.stack([tf.cast(slots, tf.int64), indices], axis=1),
                targets))
            if self.constraint == "previous_epoch":
                self.pool_slot.assign(self._slots_after(indices))
        super().write_bank(targets, columns, ctx)

    def after_apply(self, outputs, ctx):
        super().after_apply(outputs, ctx)  # the target, the bank and the pool
        if self.keeps_pool and self.constraint == "pseudo_label" and self.cluster_every_steps:
            # The official code re-clusters between epochs; a refresh due at
            # the start of step k (k % every == 0) runs at the end of step
            # k - 1, after its pool write, so step k sees the same labels.
            due = tf.equal((ctx.step + 1) % self.cluster_every_steps, 0)
            # The assignment stays outside the cond: under MirroredStrategy a
            # replicated variable cannot be written inside control flow. Every
            # replica clusters the same replicated pool, so labels agree.
            self.set_pseudo_labels(tf.cond(due, self.cluster_pool,
                                           lambda: self.pseudo_labels.value))


class SupervisedCMSF(CMSF):
    """Supervised CMSF: mean shift to the target's nearest neighbours of its own class.

    CMSF's supervised variant (`UCDvision/CMSF/supervised/train_cmsf_sup.py`):
    the bank stores each row's class, and the loss is the MSF loss over the
    `topk` bank rows nearest to the target among those with the anchor's
    class label, with the current batch in the bank (so the anchor itself is
    the first). Unlike the self-supervised CMSF there is no unconstrained
    term: the official supervised loss is the constrained one alone.

    The class of each row comes with the batch (`Batch.label`); a row with
    label -1 (unknown) stops training with an assertion. After each step the
    all-gathered classes are written beside the targets into the bank's
    label column (-1 where no row was written yet), as the official code
    queues them. No per-example embedding pool is kept. Logs
    `neighbor_purity`, the official `purity`: the share of the unconstrained
    top-k neighbours that have the anchor's class.

    Args:
        encoder: online backbone.
        **kwargs: MSF's (momentum, queue_size, topk, heads, ...). Official
            supervised defaults match MSF's: m 0.99, bank 128,000, k 5.

    Deviations: those of CMSF (no ShuffleBN; excluded slots weigh 0 when a
    class has fewer than k rows in the bank, where the official code
    averages in rows at distance 5).
    """

    log_names = ("neighbor_purity",)
    queue_columns = ("label",)  # the class of each bank row
    keeps_pool = False

    def __init__(self, encoder, **kwargs):
        if "labels" in kwargs:
            raise ValueError("SupervisedCMSF takes no 'labels': the class of each row "
                             "comes with the batch (its 'label').")
        for name in ("constraint", "num_clusters", "cluster_every_steps", "constraint_topk"):
            if name in kwargs:
                raise ValueError(f"SupervisedCMSF takes no {name!r}: it constrains by class.")
        super().__init__(encoder, constraint="pseudo_label", cluster_every_steps=0,
                         **kwargs)

    def set_pseudo_labels(self, labels):
        raise ValueError("SupervisedCMSF constrains by the classes its batches bring; "
                         "it has no pseudo-labels.")

    def cluster_pool(self):
        raise ValueError("SupervisedCMSF constrains by the classes its batches bring; "
                         "there is nothing to cluster.")

    def forward(self, batch, ctx):
        tf.debugging.assert_non_negative(
            batch.label, message="SupervisedCMSF needs the class of every row, but the "
            "batch has rows with label -1 (unknown): train it on a labelled split.")
        return super().forward(batch, ctx)

    def column_values(self, outputs):
        return {"label": outputs.label}

    def allowed_rows(self, outputs, contents):
        # Unwritten rows hold -1, which no anchor's class equals.
        return tf.cast(outputs.label, tf.int64)[:, None] == contents.label[None, :]

    def loss(self, outputs, ctx):
        # The official supervised loss is the constrained term alone.
        loss, logs, _, neighbors, same_class = self.constrained_terms(outputs)
        purity = tf.reduce_mean(tf.cast(tf.gather(same_class, neighbors, batch_dims=1),
                                        tf.float32))
        return loss, {**logs, "neighbor_purity": purity}

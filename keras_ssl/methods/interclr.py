"""InterCLR: intra- and inter-image invariance (Xie, Zhan, Liu, Ong, Loy; IJCV 2022)."""

import numbers
import warnings

import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.losses import inter_image_nce_loss
from keras_ssl.methods.moco import MoCo
from keras_ssl.layers import ClusteredBank

NEGATIVE_SAMPLINGS = ("semihard", "random", "semieasy", "hard")


class InterCLR(MoCo):
    """MoCo v2 plus an inter-image branch on online memory-bank pseudo-labels.

    Paper: "Delving into Inter-Image Invariance for Unsupervised Visual
    Representations", arXiv 2008.11702. Official code: open-mmlab/mmselfsup,
    branch `0.x`: `models/algorithms/interclr_moco.py` (losses, sampling),
    `models/memories/interclr_memory.py` (bank, online labels) and
    `core/hooks/interclr_hook.py` (initial clustering, centroids, small
    clusters); config `configs/selfsup/_base_/models/interclr-moco.py`.

    Loss = intra_loss_weight * MoCo v2 InfoNCE (query vs key and the queue)
         + inter_loss_weight * inter-image InfoNCE: the query against
           * a positive: the bank feature of a uniformly drawn member of the
             anchor's pseudo-cluster (possibly the anchor's own row, as in the
             official code), with the cosine margin on its logit (official
             -0.5: +0.5 on the positive cosine, the "less stringent" boundary);
           * `num_negatives` negatives drawn uniformly, without replacement,
             from a pool of bank rows outside the anchor's cluster. Semi-hard
             (the default): the pool is the `negative_pool_size` bank rows most
             similar to the (detached) query, i.e. ranks [0, pool) with the
             same-cluster rows taken out, which drops the easiest negatives
             (ranks >= pool). "semieasy": the pool is the least similar rows;
             "random": the whole bank. "hard" draws nothing: the negatives
             are the `num_negatives` most similar rows outside the cluster.
    Both branches share the projection head and the temperature. After the
    step the all-gathered normalised keys are enqueued (MoCo) and written
    into the bank, replacing the rows (momentum 0: the old row's weight), the
    written rows are relabelled to the best centroid, centroids are
    recomputed every `centroid_update_interval` steps and small clusters are
    dissolved (`keras_ssl.layers.ClusteredBank`).

    The bank starts as the official hook starts it, from a pass over the
    whole training set (`keras_ssl.training.EpochFeaturePass`, which `fit`
    requires): before epoch `inter_warmup_epochs` (0: before training) every
    training image, un-augmented, goes through the key encoder and key
    projector in inference mode; the L2-normalised projections, which is
    what the bank stores, fill every row, are clustered by k-means
    (k-means++ seeding, `initial_kmeans_iters` Lloyd iterations) and small
    clusters are dissolved (`ClusteredBank.initialize`). Until then the
    inter branch has weight 0 and the intra branch 1 (the hook's warm-up
    weights), and the rows hold random vectors and the keys written so far.

    Args:
        encoder: backbone.
        num_examples: training-set size N (one bank row each); None takes it
            from the run context.
        projection_hidden_dim, projection_dim, queue_size, temperature,
            momentum, shuffle_bn, seed: as `MoCo` (official: MoCoV2Neck
            2048-2048-128, queue 65,536, t=0.2, m=0.999).
        num_clusters: K (official `num_classes`: 10,000 on ImageNet).
        min_cluster_size: official `min_cluster` (20).
        centroid_update_interval: official `centroids_update_interval` (10).
        num_negatives: official `neg_num` (16,384).
        negative_sampling: official `neg_sampling`, one of "semihard"
            (default), "random", "semieasy", "hard".
        negative_pool_size: official `semihard_neg_pool_num` (128,000); also
            the semi-easy pool.
        inter_cos_margin: official `inter_cos_margin` (-0.5).
        intra_loss_weight, inter_loss_weight: 0.75 and 0.25.
        inter_warmup_epochs: whole epochs with weights intra 1 / inter 0 (the
            official hook's `warmup_epochs`); the bank is clustered from the
            feature pass before the first epoch after them.
        initial_kmeans_iters: Lloyd iterations of that clustering (20, as the
            official faiss run).

    Example:
    >>> from keras_ssl.backbones import tiny_backbone
    >>> model = InterCLR(tiny_backbone(), num_examples=64, projection_dim=8,
    ...                  queue_size=16, num_clusters=4, min_cluster_size=2,
    ...                  num_negatives=4, negative_pool_size=16)
    >>> model.uses_epoch_features, model.wants_epoch_features(0)
    (True, True)

    Deviations, and why:

    * Initial clustering. The official hook clusters the features of the
      query network's neck (faiss, before training); at that point the key
      network is the same network. Here the features come from the key
      network, the one whose projections the bank stores, so after a warm-up
      (`inter_warmup_epochs` > 0) the clustering sees the EMA network of that
      epoch rather than the untrained one (the official hook extracts before
      the run whatever the warm-up). The pass uses the evaluation pipeline
      (the official one: resize and centre crop).
    * Sampling is fixed-shape: positives through the bank rows sorted by
      label plus a uniform offset into the anchor's cluster (no per-anchor
      loop); negatives as the top `num_negatives` of uniform random keys over
      the pool, with same-cluster rows keyed below every allowed row. That
      is uniform sampling without replacement from the allowed pool, which is
      what the official rejection loop (`torch.multinomial` without
      replacement, same-label draws redrawn) approximates; if fewer than
      `num_negatives` rows are allowed the rest are masked out of the loss
      instead of repeated. "hard" takes the top `num_negatives` of the
      similarities with same-cluster rows pushed below every other row, which
      is the official top-(M + largest cluster) list with those rows deleted.
    * Random draws are stateless, from stream 1 of the step context's seeds
      (stream 0 is MoCo's shuffle), drawn for the global batch, then sliced
      to this replica's rows, so 1 and N replicas draw the same positives
      and negatives. The official code broadcasts rank 0's bank every step;
      here every replica applies the same all-gathered update to an
      ONLY_FIRST_REPLICA copy.
    * Cluster maintenance follows `ClusteredBank` (its own deviations: a
      deterministic 2-means split with a median fallback).
    * Logged `intra_loss`/`inter_loss` are unweighted (the official logs are
      weighted).
    * A pool or negative count larger than the bank (e.g. a preset run on a
      small subset) is reduced to what the bank holds, with a warning.
    """

    log_names = ("intra_loss", "inter_loss", "change_ratio")
    state_attributes = ("memory", "bank_clustered")
    uses_epoch_features = True

    def __init__(self, encoder, *, num_examples=None, projection_hidden_dim=None,
                 projection_dim=128, queue_size=65536, temperature=0.2, momentum=0.999,
                 shuffle_bn=True, num_clusters=10000, min_cluster_size=20,
                 centroid_update_interval=10, num_negatives=16384,
                 negative_sampling="semihard", negative_pool_size=128000,
                 inter_cos_margin=-0.5, intra_loss_weight=0.75, inter_loss_weight=0.25,
                 inter_warmup_epochs=0, initial_kmeans_iters=20, seed=0, **kwargs):
        super().__init__(encoder, projection_hidden_dim=projection_hidden_dim,
                         projection_dim=projection_dim, queue_size=queue_size,
                         temperature=temperature, momentum=momentum,
                         shuffle_bn=shuffle_bn, seed=seed, **kwargs)
        num_examples = num_examples or self.run.num_examples
        if not num_examples:
            raise ValueError("InterCLR keeps a memory row per training example: give "
                             "num_examples or run=RunContext(num_examples=...).")
        if negative_sampling not in NEGATIVE_SAMPLINGS:
            raise ValueError(f"negative_sampling={negative_sampling!r} is not one of "
                             f"{', '.join(NEGATIVE_SAMPLINGS)}.")
        whole = (isinstance(inter_warmup_epochs, numbers.Real)
                 and not isinstance(inter_warmup_epochs, bool)
                 and float(inter_warmup_epochs).is_integer() and inter_warmup_epochs >= 0)
        if not whole:
            raise ValueError("inter_warmup_epochs is a whole number of epochs >= 0 (the "
                             "bank is clustered from a pass over the training set at an "
                             f"epoch boundary); got {inter_warmup_epochs!r}.")
        if negative_sampling in ("random", "hard"):
            negative_pool_size = num_examples  # the whole bank is ranked or drawn from
        if negative_pool_size > num_examples or num_negatives > negative_pool_size:
            reduced_pool = min(negative_pool_size, num_examples)
            reduced_negatives = min(num_negatives, reduced_pool)
            warnings.warn(f"InterCLR: a bank of {num_examples} rows cannot give "
                          f"{num_negatives} negatives from a pool of {negative_pool_size}; "
                          f"using {reduced_negatives} from {reduced_pool}.")
            negative_pool_size, num_negatives = reduced_pool, reduced_negatives
        self.num_examples = num_examples
        self.num_clusters = num_clusters
        self.num_negatives = num_negatives
        self.negative_sampling = negative_sampling
        self.negative_pool_size = negative_pool_size
        self.inter_cos_margin = inter_cos_margin
        self.intra_loss_weight = intra_loss_weight
        self.inter_loss_weight = inter_loss_weight
        self.inter_warmup_epochs = int(inter_warmup_epochs)
        self.initial_kmeans_iters = initial_kmeans_iters
        self.memory = ClusteredBank(
            num_examples, projection_dim, num_clusters,
            min_cluster_size=min_cluster_size,
            centroid_update_interval=centroid_update_interval, momentum=0.0,
            seed=seed, name="memory")
        with distribute.replicated_state_scope():
            # 1 once the feature pass has filled and clustered the bank: the
            # end of the warm-up (a weight, so a resumed run knows it).
            self.bank_clustered = self.add_weight(shape=(), dtype="int32", trainable=False,
                                                  initializer="zeros", name="bank_clustered")
        self.built = True

    # ---- the initial clustering (epoch feature pass) ---------------------------
    def wants_epoch_features(self, epoch):
        """Before epoch `inter_warmup_epochs`, unless the bank is clustered already."""
        return epoch >= self.inter_warmup_epochs and not int(self.bank_clustered.numpy())

    def epoch_features(self, images):
        """What the bank stores: normalised key projections, in inference mode."""
        keys = self.key_projector(self.key_encoder(images, training=False), training=False)
        return tf.math.l2_normalize(tf.cast(keys, tf.float32), axis=1)

    def on_epoch_features(self, features, ctx):
        """Fills every bank row, clusters the bank, and ends the warm-up."""
        if features.shape[0] != self.num_examples:
            raise ValueError(f"InterCLR's bank has {self.num_examples} rows, but the "
                             f"feature pass gave {features.shape[0]} examples.")
        self.memory.initialize(features, num_iters=self.initial_kmeans_iters)
        self.bank_clustered.assign(1)

    # ---- the inter-image branch -----------------------------------------------
    def _uniform_draws(self, local_batch_size, columns, ctx):
        """[local_batch, columns] uniforms, drawn for the global batch so replicas agree."""
        uniform = tf.random.stateless_uniform(
            [local_batch_size * distribute.num_replicas(), columns],
            ctx.seed_for(1))  # 1: not MoCo's shuffle
        return distribute.local_rows(uniform, local_batch_size)

    def sample_inter_pairs(self, queries, indices, ctx):
        """Bank indices of each anchor's positive [B] and negatives [B, M], and a mask [B, M]."""
        bank = self.memory.read()
        assignments = self.memory.assignments.value
        labels = tf.gather(assignments, tf.cast(indices, tf.int32))
        # "hard" negatives are not drawn: only the positive needs a uniform.
        pool_draws = 0 if self.negative_sampling == "hard" else self.negative_pool_size
        uniform = self._uniform_draws(tf.shape(queries)[0], 1 + pool_draws, ctx)
        positives = sample_positives(assignments, labels, uniform[:, 0],
                                     num_clusters=self.num_clusters)
        queries = tf.stop_gradient(tf.math.l2_normalize(tf.cast(queries, tf.float32), axis=1))
        similarities = tf.matmul(queries, bank, transpose_b=True)
        negatives, mask = sample_negatives(
            similarities, assignments, labels, uniform[:, 1:],
            num_negatives=self.num_negatives, pool_size=self.negative_pool_size,
            sampling=self.negative_sampling)
        return positives, negatives, mask

    def loss(self, outputs, ctx):
        intra_loss, logs = super().loss(outputs, ctx)
        queries = outputs.queries[0]
        positives, negatives, mask = self.sample_inter_pairs(queries, outputs.index, ctx)
        bank = self.memory.read()
        inter_loss = inter_image_nce_loss(
            queries, tf.gather(bank, positives), tf.gather(bank, negatives),
            temperature=self.temperature, margin=self.inter_cos_margin,
            negative_mask=mask)
        # The warm-up lasts until the feature pass has clustered the bank.
        warming_up = tf.equal(self.bank_clustered, 0)
        intra_weight = tf.where(warming_up, 1.0, self.intra_loss_weight)
        inter_weight = tf.where(warming_up, 0.0, self.inter_loss_weight)
        loss = intra_weight * intra_loss + inter_weight * inter_loss
        return loss, {**logs, "intra_loss": intra_loss, "inter_loss": inter_loss}

    def after_apply(self, outputs, ctx):
        super().after_apply(outputs, ctx)  # the key encoder, then the queue
        keys = tf.math.l2_normalize(tf.cast(outputs.keys[0], tf.float32), axis=1)
        change_ratio = self.memory.write(outputs.index, keys)  # gathers both
        self.log("change_ratio", change_ratio)


def sample_positives(assignments, labels, uniform, *, num_clusters):
    """A uniformly drawn bank row of each anchor's cluster.

    Args:
        assignments: [N] int32 cluster of every bank row.
        labels: [B] int32 cluster of each anchor (a non-empty cluster).
        uniform: [B] float in [0, 1).

    Returns:
        [B] int32 bank indices with `assignments[result] == labels`.
    """
    # Rows sorted by cluster: cluster c occupies order[starts[c]:starts[c] + sizes[c]].
    order = tf.argsort(assignments, stable=True)
    sizes = tf.math.unsorted_segment_sum(tf.ones_like(assignments), assignments,
                                         num_clusters)
    starts = tf.cumsum(sizes, exclusive=True)
    size = tf.gather(sizes, labels)
    offset = tf.minimum(tf.cast(uniform * tf.cast(size, tf.float32), tf.int32), size - 1)
    return tf.gather(order, tf.gather(starts, labels) + offset)


def sample_negatives(similarities, assignments, labels, uniform, *, num_negatives,
                     pool_size, sampling="semihard"):
    """Negatives drawn uniformly without replacement from a pool, outside each anchor's cluster.

    Args:
        similarities: [B, N] query-to-bank cosines (ranks the pool).
        assignments: [N] int32 cluster of every bank row.
        labels: [B] int32 cluster of each anchor.
        uniform: [B, pool_size] floats in [0, 1), one key per pool slot
            (unused, and may be empty, for "hard").
        num_negatives: M <= pool_size.
        pool_size: "semihard": the pool is the rows of similarity rank
            [0, pool_size); "semieasy": the pool_size least similar rows;
            "random": every row (pool_size must be N). "hard": no pool, the
            M most similar rows outside the cluster, most similar first.

    Returns:
        (indices [B, M] int32, mask [B, M] bool): mask is False where fewer
        than M pool rows lie outside the anchor's cluster.
    """
    if sampling == "hard":
        outside = tf.not_equal(assignments[None, :], labels[:, None])
        # Cosines lie in [-1, 1]: a key of -3 ranks a same-cluster row last.
        keys, picks = tf.math.top_k(tf.where(outside, similarities, -3.0), num_negatives)
        return picks, keys > -2.0
    if sampling == "semihard":
        pool = tf.math.top_k(similarities, pool_size).indices
    elif sampling == "semieasy":
        pool = tf.math.top_k(-similarities, pool_size).indices
    elif sampling == "random":
        pool = tf.broadcast_to(tf.range(tf.shape(similarities)[1]), tf.shape(similarities))
    else:
        raise ValueError(f"sampling={sampling!r} is not one of {', '.join(NEGATIVE_SAMPLINGS)}.")
    allowed = tf.not_equal(tf.gather(assignments, pool), labels[:, None])
    # Random keys, same-cluster rows below every allowed one: the top M keys
    # are a uniform M-subset of the allowed rows.
    keys, picks = tf.math.top_k(tf.where(allowed, uniform, -1.0), num_negatives)
    return tf.gather(pool, picks, batch_dims=1), keys >= 0.0

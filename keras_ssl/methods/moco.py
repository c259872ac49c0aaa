"""MoCo v2 (Chen, Fan, Girshick, He; arXiv 2003.04297), on MoCo (He et al., CVPR 2020)."""

import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.backbones import has_split_batch_norm
from keras_ssl.layers import RingQueue, mlp_head
from keras_ssl.losses import info_nce_loss
from keras_ssl.losses.logit_transforms import (directions_cross_entropy, queue_logits,
                                               transform_directions)
from keras_ssl.methods.momentum import MomentumMethod
from keras_ssl.methods.outputs import ContrastiveOutputs
from keras_ssl.objectives.cld import normalized_head


class MoCo(MomentumMethod):
    """Momentum contrast: queries against momentum-encoder keys and a queue.

    Args:
        encoder: backbone (the query encoder; the key encoder is its EMA copy).
        projection_hidden_dim: hidden width of the MLP head (None: feature
            width; MoCo v2's head is 2048-2048-128 on ResNet-50, without BN;
            0: no hidden layer, the linear head of MoCo v1 and CLD's CIFAR code).
        projection_dim: key width (128).
        queue_size: negatives kept (65,536 on ImageNet, 4,096 on CIFAR).
        temperature: 0.2 (MoCo v2).
        momentum: key-encoder EMA (0.999); constant, as in the paper.
        symmetric: also contrast view 2's query with view 1's key (MoCo v3 and
            lightly's CIFAR benchmark do; MoCo v2 does not).
        shuffle_bn: with several replicas, run the key encoder on a batch
            shuffled across replicas and unshuffle the keys. MoCo's fix for
            BatchNorm leaking which key matches which query through
            per-device batch statistics. With one replica it changes nothing.
        normlinear: end the head with CLD's NormLinear (a cosine layer
            without bias) instead of a Dense layer; CLD's `--normlinear`
            (CIFAR MoCo+CLD, and with the hidden layer its ImageNet "NormMLP").
        shared_key_view: CLD's MoCo code (`train_cifar_moco_cld.py`,
            `models/builder.py`) draws three views: queries from views 0 and 1
            are both contrasted with the key of a third view, the loss
            averages the two, and that key is enqueued once. Set this to the
            key's view index (2) to do the same; the view recipe must then
            make that many views (`num_views=3`). Excludes `symmetric`.

    With `logit_transforms` the loss is computed from the queue logits after
    each transform (`keras_ssl.losses.logit_transforms`); without, it is
    plain InfoNCE. When a transform reads the negatives' dataset indices
    (`needs_column_index`, IFND), the queue keeps an index column beside the
    keys.

    The key encoder moves as in the official code, where it is updated just
    before the keys are computed (see `MomentumMethod.targets_lead`); keys
    are all-gathered and enqueued after the step. Random draws (the shuffle)
    use stream 0 of the step context's seeds.
    """

    recipe_name = "moco_v2"
    state_attributes = ("key_encoder", "key_projector", "queue")
    targets_lead = True
    accepts_extra_negatives = True

    def __init__(self, encoder, *, projection_hidden_dim=None, projection_dim=128,
                 queue_size=65536, temperature=0.2, momentum=0.999, symmetric=False,
                 shuffle_bn=True, normlinear=False, shared_key_view=None, seed=0,
                 **kwargs):
        super().__init__(encoder, base_momentum=momentum, **kwargs)
        if symmetric and shared_key_view is not None:
            raise ValueError("symmetric and shared_key_view are two ways to use a "
                             "second query view; pick one.")
        self.temperature = temperature
        self.symmetric = symmetric
        self.shuffle_bn = shuffle_bn
        self.shared_key_view = shared_key_view
        self.seed = seed
        hidden_dims = (() if projection_hidden_dim == 0
                       else (projection_hidden_dim or self.feature_dim,))
        if normlinear:
            self.projector = normalized_head(self.feature_dim, hidden_dims,
                                             projection_dim, name="projector")
        else:
            self.projector = mlp_head(self.feature_dim, hidden_dims, projection_dim,
                                      batch_norm=False, name="projector")
        self.key_encoder = self.make_target(self.encoder, "key_encoder")
        self.key_projector = self.make_target(self.projector, "key_projector")
        # Only when a transform reads it: the column is a variable, and
        # adding it to every MoCo would change what its checkpoints hold.
        columns = (("index",) if any(getattr(transform, "needs_column_index", False)
                                     for transform in self.logit_transforms) else ())
        self.queue = RingQueue(queue_size, projection_dim, columns=columns, seed=seed,
                               name="queue")
        self.built = True

    def _keys(self, images, ctx):
        """Key projections, with MoCo's shuffled BatchNorm across replicas."""
        training = ctx.training
        local_batch = tf.shape(images)[0]
        # One replica's BatchNorm sees the whole batch, whatever its order,
        # unless it is split into sub-batches: then the shuffle keeps a key
        # out of its query's sub-batch, as the official single-GPU codes
        # shuffle before their SplitBatchNorm (`_batch_shuffle_single_gpu`).
        shuffle = self.shuffle_bn and (distribute.num_replicas() > 1
                                       or has_split_batch_norm(self.key_encoder))
        if shuffle:
            all_images = distribute.all_gather(images)
            # Every replica draws the same permutation: the seed depends only
            # on the step, not on the replica.
            order = tf.argsort(tf.random.stateless_uniform(
                [tf.shape(all_images)[0]], ctx.seed_for(0)))
            images = distribute.local_rows(tf.gather(all_images, order), local_batch)
        keys = self.key_projector(self.key_encoder(images, training=training),
                                  training=training)
        if shuffle:
            keys = distribute.all_gather(keys)
            keys = tf.gather(keys, tf.argsort(order))  # undo the shuffle
            keys = distribute.local_rows(keys, local_batch)
        return tf.stop_gradient(keys)

    def forward(self, batch, ctx):
        views, training = batch.views, ctx.training
        # No ordering between the query and key branches is needed: replicas
        # match collectives (shuffle all-gathers, synchronized BatchNorm) by
        # instance keys assigned at trace time, not by execution order.
        if self.shared_key_view is not None and len(views) <= self.shared_key_view:
            raise ValueError(f"shared_key_view={self.shared_key_view} needs "
                             f"{self.shared_key_view + 1} views, got {len(views)}; "
                             f"build the view recipe with num_views=3.")
        two_queries = self.symmetric or self.shared_key_view is not None
        query_views = views[:2] if two_queries else views[:1]
        features = self.encode_views(query_views, training)
        queries = tuple(self.projector(f, training=training) for f in features)
        if self.shared_key_view is not None:
            # One key per image, the positive of both queries (one entry per
            # query, so the loss pairs them like the symmetric case).
            keys = (self._keys(views[self.shared_key_view], ctx),) * 2
        else:
            key_views = (views[1], views[0]) if self.symmetric else (views[1],)
            keys = tuple(self._keys(v, ctx) for v in key_views)
        extra_negatives = None
        if batch.negative_view is not None:
            # BG_Swaps' extra negative shares the anchor's (query view 0's)
            # background: it is encoded like a key, as the queue's negatives were.
            extra_negatives = self._keys(batch.negative_view, ctx)
        return ContrastiveOutputs(features=features, queries=queries, keys=keys,
                                  index=batch.index, label=batch.label,
                                  extra_negatives=extra_negatives,
                                  extra_negative_used=batch.negative_used)

    def loss(self, outputs, ctx):
        queue = self.queue.read()
        if not self.logit_transforms:
            # The extra negative belongs to the query of the anchor view (the first).
            losses = [info_nce_loss(q, k, queue, temperature=self.temperature,
                                    **(self._extra_negatives(outputs) if i == 0 else {}))
                      for i, (q, k) in enumerate(zip(outputs.queries, outputs.keys))]
            return tf.add_n(losses) / len(losses), {}
        if outputs.extra_negatives is not None:
            raise ValueError("BG_Swaps' extra negatives do not combine with logit transforms "
                             f"({', '.join(type(t).__name__ for t in self.logit_transforms)}) "
                             "yet; use --background=rm,random.")
        negative_index = (self.queue.read_column("index") if "index" in self.queue.columns
                          else None)
        directions = tuple(
            queue_logits(q, k, queue, temperature=self.temperature, index=outputs.index,
                         negative_index=negative_index).replace(direction=i)
            for i, (q, k) in enumerate(zip(outputs.queries, outputs.keys)))
        return directions_cross_entropy(
            transform_directions(directions, self.logit_transforms, ctx))

    @staticmethod
    def _extra_negatives(outputs):
        if outputs.extra_negatives is None:
            return {}
        return {"extra_negatives": outputs.extra_negatives,
                "extra_negative_used": outputs.extra_negative_used}

    def after_apply(self, outputs, ctx):
        super().after_apply(outputs, ctx)  # the key encoder, for the next step
        # The queue gathers the keys of every replica, so all hold the same rows.
        columns = {"index": outputs.index} if "index" in self.queue.columns else {}
        self.queue.write(tf.math.l2_normalize(tf.cast(outputs.keys[0], tf.float32), axis=1),
                         **columns)

"""NPID, instance discrimination with a memory bank (Wu, Xiong, Yu, Lin; CVPR 2018)."""

import tensorflow as tf

from keras_ssl.layers import IndexedBank, mlp_head
from keras_ssl.losses import non_parametric_softmax_loss
from keras_ssl.losses.logit_transforms import (bank_logits, directions_cross_entropy,
                                               transform_directions)
from keras_ssl.methods.base import Method
from keras_ssl.methods.outputs import ContrastiveOutputs


class NPID(Method):
    """Non-parametric instance discrimination.

    Args:
        encoder: backbone.
        num_examples: size of the training set (one memory row each); None
            takes it from the run context.
        projection_dim: embedding width (128, a linear layer as in the paper).
        temperature: 0.1, the CIFAR setting of the official code (`--nce-t`).
        bank_momentum: memory update `m <- norm(0.5 m + 0.5 v)`.

    Deviation: the loss is the full softmax over every memory row, which is
    what the official CIFAR runs (`--nce-k 0`) and CLD use; the paper's NCE
    approximation with 4,096 noise samples (for ImageNet's 1.28M rows) is not
    implemented. Each batch brings two views (CLD's setting); the loss averages
    them and the memory is updated with the first view's embedding, the
    single view of the original method.
    """

    recipe_name = "npid"
    state_attributes = ("memory",)

    def __init__(self, encoder, *, num_examples=None, projection_dim=128,
                 temperature=0.1, bank_momentum=0.5, seed=0, **kwargs):
        super().__init__(encoder, **kwargs)
        num_examples = num_examples or self.run.num_examples
        if not num_examples:
            raise ValueError("NPID keeps a memory row per training example: give "
                             "num_examples or run=RunContext(num_examples=...).")
        self.temperature = temperature
        self.projector = mlp_head(self.feature_dim, (), projection_dim,
                                  batch_norm=False, name="projector")
        self.memory = IndexedBank(num_examples, projection_dim,
                                  momentum=bank_momentum, seed=seed, name="memory")
        self.built = True

    def forward(self, batch, ctx):
        features = self.encode_views(batch.views, ctx.training)
        queries = tuple(
            tf.math.l2_normalize(tf.cast(self.projector(f, training=ctx.training),
                                         tf.float32), axis=1)
            for f in features)
        return ContrastiveOutputs(features=features, queries=queries, index=batch.index,
                                  label=batch.label)

    def loss(self, outputs, ctx):
        bank = self.memory.read()
        if not self.logit_transforms:
            losses = [non_parametric_softmax_loss(q, bank, outputs.index,
                                                  temperature=self.temperature)
                      for q in outputs.queries]
            return tf.add_n(losses) / len(losses), {}
        directions = tuple(
            bank_logits(q, bank, outputs.index, temperature=self.temperature).replace(direction=i)
            for i, q in enumerate(outputs.queries))
        return directions_cross_entropy(
            transform_directions(directions, self.logit_transforms, ctx))

    def after_apply(self, outputs, ctx):
        # The bank gathers every replica's rows, so all replicas write the same.
        self.memory.write(outputs.index, outputs.queries[0])

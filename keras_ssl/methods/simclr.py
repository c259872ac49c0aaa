"""SimCLR (Chen, Kornblith, Norouzi, Hinton; ICML 2020, arXiv 2002.05709)."""

import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.layers import mlp_head
from keras_ssl.losses import nt_xent_loss
from keras_ssl.losses.logit_transforms import (batch_logits, directions_cross_entropy,
                                               transform_directions)
from keras_ssl.methods.base import Method
from keras_ssl.methods.outputs import ContrastiveOutputs


class SimCLR(Method):
    """Contrastive learning of two views with NT-Xent over the global batch.

    Args:
        encoder: backbone model.
        projection_hidden_dim: hidden width of the projection MLP (None: the
            encoder's feature width, as in the paper: 2048 for ResNet-50).
        projection_dim: output width (128).
        temperature: NT-Xent temperature; 0.1 is the paper's ImageNet value
            (with LARS, batch 4096); CIFAR presets use 0.5.
        synchronized_bn: BatchNorm of the head over all replicas (the paper's
            global BN).

    Negatives come from every replica (all-gathered, with gradients), so the
    loss does not depend on how the batch is split across devices.

    Example:
    >>> from keras_ssl.backbones import tiny_backbone
    >>> model = SimCLR(tiny_backbone(), projection_dim=16)
    >>> model.projector.output_shape
    (None, 16)
    """

    recipe_name = "simclr"

    def __init__(self, encoder, *, projection_hidden_dim=None, projection_dim=128,
                 temperature=0.1, synchronized_bn=True, **kwargs):
        super().__init__(encoder, **kwargs)
        self.temperature = temperature
        self.projector = mlp_head(
            self.feature_dim, (projection_hidden_dim or self.feature_dim,),
            projection_dim, synchronized_bn=synchronized_bn, name="projector")
        self.built = True

    def forward(self, batch, ctx):
        features = self.encode_views(batch.views[:2], ctx.training)
        queries = tuple(self.projector(f, training=ctx.training) for f in features)
        return ContrastiveOutputs(features=features, queries=queries, index=batch.index,
                                  label=batch.label)

    def loss(self, outputs, ctx):
        a, b = outputs.queries
        global_a, global_b = distribute.all_gather(a), distribute.all_gather(b)
        offset = distribute.global_offset(tf.shape(a)[0])
        if not self.logit_transforms:
            return nt_xent_loss(a, b, global_a, global_b, offset,
                                temperature=self.temperature), {}
        # The same two directions as NT-Xent, each through the transforms,
        # which may look up the dataset index behind every column (IFND).
        global_index = distribute.all_gather(outputs.index)
        directions = tuple(
            batch_logits(anchors, same_view, other_view, offset, temperature=self.temperature,
                         index=outputs.index, global_index=global_index).replace(direction=i)
            for i, (anchors, same_view, other_view) in enumerate(
                ((a, global_a, global_b), (b, global_b, global_a))))
        return directions_cross_entropy(
            transform_directions(directions, self.logit_transforms, ctx))

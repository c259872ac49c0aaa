"""BYOL (Grill et al., NeurIPS 2020, arXiv 2006.07733)."""

import tensorflow as tf

from keras_ssl.layers import mlp_head
from keras_ssl.losses import normalized_regression_loss
from keras_ssl.methods.momentum import MomentumMethod
from keras_ssl.methods.outputs import DistillationOutputs


class BYOL(MomentumMethod):
    """Bootstrap your own latent: predict the target network's projection.

    Args:
        encoder: online backbone.
        projection_hidden_dim: 4096 (paper). projection_dim: 256.
        prediction_hidden_dim: 4096 (paper).
        base_momentum: 0.996 (1000-epoch preset; 0.99 for 300 epochs),
            increased to 1 with a cosine over `total_steps`.
        total_steps: optimizer steps of the run, for the momentum schedule.
        synchronized_bn: the paper's cross-replica BatchNorm in the heads.

    The loss sums both directions, as the official code does: each term is
    2 - 2 cos(prediction, target) in [0, 4]. The target network runs in
    training mode (batch statistics, its own moving averages) and is updated
    after the optimizer step with tau_k of the step k just taken
    (`MomentumMethod.after_apply`). Each view is its own batch, as in the paper's code.
    Logs `z_std`, the std of normalised projections, a cheap collapse monitor
    (solo-learn): it tends to 0 if all images map to one point.
    """

    recipe_name = "byol"
    state_attributes = ("target_encoder", "target_projector")
    log_names = ("z_std",)

    def __init__(self, encoder, *, projection_hidden_dim=4096, projection_dim=256,
                 prediction_hidden_dim=4096, base_momentum=0.996,
                 final_momentum=1.0, total_steps=None, synchronized_bn=True,
                 **kwargs):
        super().__init__(encoder, base_momentum=base_momentum,
                         final_momentum=final_momentum, total_steps=total_steps,
                         **kwargs)
        self.projector = mlp_head(self.feature_dim, (projection_hidden_dim,),
                                  projection_dim, synchronized_bn=synchronized_bn,
                                  name="projector")
        self.predictor = mlp_head(projection_dim, (prediction_hidden_dim,),
                                  projection_dim, synchronized_bn=synchronized_bn,
                                  name="predictor")
        self.target_encoder = self.make_target(self.encoder, "target_encoder")
        self.target_projector = self.make_target(self.projector, "target_projector")
        self.built = True

    def forward(self, batch, ctx):
        views, training = batch.views, ctx.training
        features = self.encode_views(views[:2], training, together=False)
        projections = tuple(self.projector(f, training=training) for f in features)
        predictions = self.predictions_of(projections, ctx)
        # No control dependencies needed for synchronized BatchNorm: replicas
        # match collectives by trace-time instance keys, not execution order.
        targets = tuple(
            tf.stop_gradient(self.target_projector(
                self.target_encoder(v, training=training), training=training))
            for v in views[:2])
        return DistillationOutputs(features=features, projections=projections,
                                   predictions=predictions, targets=targets,
                                   index=batch.index, label=batch.label)

    def predictions_of(self, projections, ctx):
        """The predictor's output for each view's projections (NCC overrides it)."""
        return tuple(self.predictor(p, training=ctx.training) for p in projections)

    def loss(self, outputs, ctx):
        (p1, p2), (t1, t2) = outputs.predictions, outputs.targets
        loss = normalized_regression_loss(p1, t2) + normalized_regression_loss(p2, t1)
        z = tf.math.l2_normalize(tf.cast(outputs.projections[0], tf.float32), axis=1)
        return loss, {"z_std": tf.reduce_mean(tf.math.reduce_std(z, axis=0))}

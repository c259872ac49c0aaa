"""The base every method shares: the training step, loss scaling, trackers.

A method supplies `forward_views` (views -> typed outputs), `compute_loss_terms`
(outputs -> loss and logs) and, for stateful methods, `after_apply` (queues,
banks, EMA targets). `call` returns encoder features, which is what `predict`,
the kNN monitor and export see.
"""

from typing import NamedTuple, Optional

import keras
import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.backbones import accept_any_image_size


class ViewOutputs(NamedTuple):
    """What `forward_views` hands to the loss; one entry per view in each tuple.

    features: backbone features. projections: online head outputs.
    predictions: predictor outputs (BYOL). targets: momentum-network
    projections. indices: dataset indices of the batch rows.
    """
    features: tuple = ()
    projections: tuple = ()
    predictions: tuple = ()
    targets: tuple = ()
    indices: Optional[tf.Tensor] = None


class Method(keras.Model):
    """Base class of self-supervised methods trained with `model.fit`.

    Args:
        encoder: a `keras.Model` from float images in [0, 1] to features.
        objectives: add-on loss layers (e.g. CLD); each is called as
            `objective(outputs, training=...) -> (weighted_loss, logs)`.

    Subclasses set `recipe_name` (the view recipe the data pipeline must
    build), `log_names` (extra scalars they return from
    `compute_loss_terms`) and `mixed_image_sizes` (True when their views
    come in several sizes). Batches are dicts with "views" (tuple of image
    tensors) and "index" (dataset indices).
    """

    recipe_name = None
    log_names = ()
    # Multi-crop views have two sizes, and one encoder sees both. Builders
    # make such an encoder with `backbones.get(..., any_image_size=True)`; an
    # encoder built for one size is relaxed here, so a user's works as well.
    mixed_image_sizes = False

    def __init__(self, encoder, *, objectives=(), **kwargs):
        super().__init__(**kwargs)
        if self.mixed_image_sizes:
            encoder = accept_any_image_size(encoder)
        self.encoder = encoder
        self.objectives = list(objectives)
        self.feature_dim = int(encoder.output_shape[-1])
        self.loss_tracker = keras.metrics.Mean(name="loss")
        names = list(self.log_names)
        for objective in self.objectives:
            names.extend(getattr(objective, "log_names", ()))
        self.log_trackers = {name: keras.metrics.Mean(name=name) for name in names}

    @property
    def metrics(self):
        return [self.loss_tracker, *self.log_trackers.values()]

    def call(self, images, training=False):
        return self.encoder(images, training=training)

    # ---- hooks ---------------------------------------------------------------
    def forward_views(self, views, indices, training):
        raise NotImplementedError

    def compute_loss_terms(self, outputs, training):
        raise NotImplementedError

    def after_apply(self, outputs):
        """State updates that must see the post-step weights (queues, banks, EMA)."""

    def update_variables(self):
        """Variables the optimizer steps (SwAV leaves frozen prototypes out)."""
        return self.trainable_variables

    # ---- template ------------------------------------------------------------
    def train_step(self, data):
        views = tuple(data["views"])
        indices = data.get("index")
        variables = self.update_variables()
        with tf.GradientTape() as tape:
            outputs = self.forward_views(views, indices, training=True)
            loss, logs = self.compute_loss_terms(outputs, training=True)
            for objective in self.objectives:
                objective_loss, objective_logs = objective(outputs, training=True)
                loss += objective_loss
                logs = {**logs, **objective_logs}
            # Each replica sees its share of the global batch and
            # apply_gradients sums the replicas' gradients, so dividing by the
            # replica count applies the gradient of the global mean loss.
            # scale_loss is the identity unless mixed precision wraps the
            # optimizer in a LossScaleOptimizer.
            scaled_loss = self.optimizer.scale_loss(
                loss / distribute.num_replicas())
        gradients = tape.gradient(scaled_loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        self.after_apply(outputs)
        # Trackers, not returned tensors: under MirroredStrategy a raw tensor
        # returned from train_step would be reported from one replica only.
        self.loss_tracker.update_state(loss)
        for name, value in logs.items():
            self.log_trackers[name].update_state(value)
        return {metric.name: metric.result() for metric in self.metrics}

    def encode_views(self, views, training, *, together=True):
        """Backbone features of each view.

        With `together`, views of one size go through the encoder as one
        batch (SimCLR's TF code and SwAV's multi-crop do this: fewer, larger
        kernels, and BatchNorm statistics over all of them); otherwise each
        view is its own batch, as in BYOL's code.
        """
        by_size = {}
        for position, view in enumerate(views):
            key = tuple(view.shape[1:3]) if together else position
            by_size.setdefault(key, []).append(position)
        features = [None] * len(views)
        for positions in by_size.values():
            stacked = tf.concat([views[p] for p in positions], axis=0)
            outputs = tf.split(self.encoder(stacked, training=training), len(positions))
            for position, output in zip(positions, outputs):
                features[position] = output
        return tuple(features)

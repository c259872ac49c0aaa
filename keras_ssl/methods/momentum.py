"""Methods with exponential-moving-average target networks (MoCo, BYOL, ...)."""

import math

import keras
import tensorflow as tf

from keras_ssl import distribute
from keras_ssl.methods.base import Method


class MomentumMethod(Method):
    """A `Method` that keeps EMA copies of some of its networks.

    Args:
        encoder: online backbone.
        base_momentum: tau at step 0.
        final_momentum: tau at `total_steps`; the schedule is BYOL's cosine
            tau_k = 1 - (1 - base) * (cos(pi k / K) + 1) / 2, rescaled to end at
            `final_momentum`. Equal values give a constant momentum (MoCo).
        total_steps: K, the optimizer steps of the whole run; None takes it
            from the run context, and without one tau stays at `base_momentum`.

    Subclasses call `make_target(online)` in `__init__` for each network to
    average. The targets move in `after_apply` (the only hook that changes
    state), right after the optimizer step:

    - `targets_lead = False` (BYOL): with tau of the step just taken, as the
      official BYOL code updates after its optimizer step.
    - `targets_lead = True` (MoCo, MSF, MIRA): their official code moves the
      key encoder at the start of step k, before the key pass, with tau_k.
      The online weights are then those after step k-1's update, which are
      also the weights right after that update; so moving the targets at the
      end of step k-1 with tau_k gives every forward pass the same targets
      (bit for bit: at step 0 the targets equal the online networks and the
      update changes nothing). The last step's update is one the official
      run never makes; only the targets see it.
    """

    log_names = ("momentum",)
    targets_lead = False

    def __init__(self, encoder, *, base_momentum, final_momentum=None,
                 total_steps=None, **kwargs):
        super().__init__(encoder, **kwargs)
        self.base_momentum = base_momentum
        self.final_momentum = base_momentum if final_momentum is None else final_momentum
        self.total_steps = total_steps or self.run.total_steps
        self._ema_pairs = []
        self._target_variable_ids = set()

    def make_target(self, online, name):
        """Returns a non-trainable copy of `online`, registered for EMA updates."""
        # Every replica computes the same EMA from mirrored online weights;
        # ONLY_FIRST_REPLICA keeps the copies from drifting apart.
        with distribute.replicated_state_scope():
            # Prefixed layer names keep weight paths unique in checkpoints.
            target = keras.models.clone_model(
                online, clone_function=lambda layer: layer.__class__.from_config(
                    {**layer.get_config(), "name": f"{name}_{layer.name}"}))
        target.name = name
        target.set_weights(online.get_weights())
        # Only trainable weights are averaged; the target's BatchNorm keeps its
        # own moving statistics from its own forward passes (BYOL, MoCo).
        self._ema_pairs.extend(zip(online.trainable_weights, target.trainable_weights))
        # The target stays `trainable` and is left out of `update_variables`
        # instead: a Keras BatchNormalization whose layer is not trainable
        # runs in inference mode even when called with training=True, so a
        # frozen target would normalise with its never-updated moving
        # statistics instead of batch statistics, and its keys collapse.
        self._target_variable_ids.update(id(v) for v in target.trainable_weights)
        return target

    def update_variables(self):
        """Online variables only: targets move by EMA, never by the optimizer."""
        return [v for v in super().update_variables()
                if id(v) not in self._target_variable_ids]

    def momentum_at(self, step):
        """tau at optimizer step `step` (a tensor)."""
        if not self.total_steps or self.base_momentum == self.final_momentum:
            return tf.constant(self.base_momentum, tf.float32)
        progress = tf.minimum(tf.cast(step, tf.float32) / float(self.total_steps), 1.0)
        cosine = (tf.cos(math.pi * progress) + 1.0) / 2.0
        return self.final_momentum - (self.final_momentum - self.base_momentum) * cosine

    def after_apply(self, outputs, ctx):
        self.update_targets(ctx)

    def update_targets(self, ctx):
        """Moves every target towards its online network (see `targets_lead`)."""
        tau = self.momentum_at(ctx.step + 1 if self.targets_lead else ctx.step)
        for online, target in self._ema_pairs:
            target.assign(target + (1.0 - tf.cast(tau, target.dtype)) * (online - target))
        self.log("momentum", tau)

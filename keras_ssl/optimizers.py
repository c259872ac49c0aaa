"""LARS, SGD with PyTorch's weight decay, and the learning-rate schedules."""

import math

import keras
from keras import ops


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from `warmup_start` to `base`, then cosine to `final`.

    Args:
        base_learning_rate: rate at the end of warm-up.
        total_steps: optimizer steps of the whole run.
        warmup_steps: steps of linear warm-up (0: none).
        warmup_start_learning_rate: rate at step 0.
        final_learning_rate: rate at `total_steps`.

    Example:
    >>> schedule = WarmupCosine(0.1, total_steps=100, warmup_steps=10)
    >>> round(float(schedule(10)), 6)
    0.1
    """

    def __init__(self, base_learning_rate, total_steps, warmup_steps=0,
                 warmup_start_learning_rate=0.0, final_learning_rate=0.0):
        self.base_learning_rate = base_learning_rate
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.warmup_start_learning_rate = warmup_start_learning_rate
        self.final_learning_rate = final_learning_rate

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = float(max(self.warmup_steps, 1))
        warm = self.warmup_start_learning_rate + (
            self.base_learning_rate - self.warmup_start_learning_rate) * step / warmup
        decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
        progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        cosine = self.final_learning_rate + 0.5 * (
            self.base_learning_rate - self.final_learning_rate) * (
                1.0 + ops.cos(math.pi * progress))
        return ops.where(step < self.warmup_steps, warm, cosine)

    def get_config(self):
        return {
            "base_learning_rate": self.base_learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "warmup_start_learning_rate": self.warmup_start_learning_rate,
            "final_learning_rate": self.final_learning_rate,
        }


class FixMatchCosine(keras.optimizers.schedules.LearningRateSchedule):
    """FixMatch's decay: `base * cos(7 pi k / (16 K))` at step k of K, no warm-up.

    The official code's schedule (google-research/fixmatch fixmatch.py:
    `lr * tf.cos(progress * (7 * np.pi) / (2 * 8))`, progress = k / K): the
    first 7/16 of a half-period, so the rate ends at cos(7 pi / 16), about
    0.2 of the base, not at 0.

    Args:
        base_learning_rate: rate at step 0.
        total_steps: optimizer steps of the whole run (K).

    Example:
    >>> schedule = FixMatchCosine(0.03, total_steps=100)
    >>> round(float(schedule(100)), 5)
    0.00585
    """

    def __init__(self, base_learning_rate, total_steps):
        self.base_learning_rate = base_learning_rate
        self.total_steps = total_steps

    def __call__(self, step):
        progress = ops.clip(ops.cast(step, "float32") / float(max(self.total_steps, 1)),
                            0.0, 1.0)
        return self.base_learning_rate * ops.cos(progress * (7.0 * math.pi / 16.0))

    def get_config(self):
        return {"base_learning_rate": self.base_learning_rate,
                "total_steps": self.total_steps}


class LARS(keras.optimizers.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al., 2017).

    The update of BYOL's and SimCLR's official code: for each weight matrix,
    g <- g + weight_decay * w, then g <- g * trust_coefficient * ||w|| / ||g||,
    m <- momentum * m + g, w <- w - lr * m. Biases and normalisation
    parameters (every 1-D variable) skip both the decay and the trust ratio
    when `exclude_bias_and_norm` is set, as both papers do.

    Args:
        learning_rate: float or schedule.
        momentum: heavy-ball momentum.
        weight_decay: L2 decay folded into the gradient (not Keras' decoupled
            decay, which is why the base class's `weight_decay` is unused).
        trust_coefficient: eta of the paper (1e-3 in BYOL and SimCLR).
        exclude_bias_and_norm: skip decay and adaptation for 1-D variables.
    """

    def __init__(self, learning_rate=0.1, momentum=0.9, weight_decay=0.0,
                 trust_coefficient=0.001, exclude_bias_and_norm=True,
                 name="lars", **kwargs):
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = momentum
        self.lars_weight_decay = weight_decay
        self.trust_coefficient = trust_coefficient
        self.exclude_bias_and_norm = exclude_bias_and_norm

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums = [self.add_variable_from_reference(v, "momentum")
                           for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        momentum = self._momentums[self._get_variable_index(variable)]
        if not (self.exclude_bias_and_norm and len(variable.shape) <= 1):
            gradient = gradient + self.lars_weight_decay * variable
            weight_norm = ops.sqrt(ops.sum(ops.square(variable)))
            gradient_norm = ops.sqrt(ops.sum(ops.square(gradient)))
            trust_ratio = ops.where(
                (weight_norm > 0) & (gradient_norm > 0),
                self.trust_coefficient * weight_norm / gradient_norm, 1.0)
            gradient = gradient * trust_ratio
        self.assign(momentum, self.momentum * momentum + gradient)
        self.assign_sub(variable, learning_rate * momentum)

    def get_config(self):
        config = super().get_config()
        config.update({
            "momentum": self.momentum,
            "weight_decay": self.lars_weight_decay,
            "trust_coefficient": self.trust_coefficient,
            "exclude_bias_and_norm": self.exclude_bias_and_norm,
        })
        return config


class SGD(keras.optimizers.SGD):
    """SGD with momentum and L2 weight decay added to the gradient.

    `keras.optimizers.SGD(weight_decay=...)` decays the weights directly
    (decoupled), outside the momentum buffer; PyTorch's SGD adds
    `weight_decay * w` to the gradient, so the decay is accumulated by the
    momentum and is about 1 / (1 - momentum) times stronger. The recipes we
    reproduce (lightly, solo-learn, the official CIFAR scripts) were tuned with
    PyTorch's, so this is that one. It applies to every variable, as theirs does.

    Args:
        learning_rate: float or schedule.
        momentum: heavy-ball momentum.
        weight_decay: L2 coefficient added to the gradient.
        nesterov: Nesterov momentum.
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, weight_decay=0.0,
                 nesterov=False, name="sgd", **kwargs):
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, momentum=momentum,
                         nesterov=nesterov, name=name, **kwargs)
        self.l2_weight_decay = weight_decay

    def update_step(self, gradient, variable, learning_rate):
        if self.l2_weight_decay:
            gradient = ops.cast(gradient, variable.dtype) + self.l2_weight_decay * variable
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "weight_decay": self.l2_weight_decay}

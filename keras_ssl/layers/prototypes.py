"""Prototypes: a bias-free linear layer whose rows are unit vectors (SwAV, MIRA).

SwAV (Caron et al., NeurIPS 2020; facebookresearch/swav `main_swav.py`) keeps
`prototypes = nn.Linear(128, 3000, bias=False)` and overwrites its weight with
`normalize(w, dim=1)` at the start of every iteration; MIRA (Lee et al.,
NeurIPS 2022; movinghoon/mira `train.py`) and solo-learn use
`weight_norm(Linear)` with the gain fixed to 1, i.e. they normalise the rows
inside the forward pass and let the gradient flow through the normalisation.
`Prototypes` does either: `normalize()` after the optimizer step (SwAV), or
`normalize_in_call=True` (MIRA).
"""

import keras
import tensorflow as tf

from keras_ssl.layers import pytorch_linear


def _unit_rows(shape, dtype=None):
    """Glorot-uniform rows scaled to unit length (SwAV's first normalisation)."""
    rows = keras.initializers.GlorotUniform()(shape, dtype="float32")
    return tf.cast(tf.math.l2_normalize(rows, axis=1), dtype or "float32")


class Prototypes(keras.layers.Layer):
    """Scores of unit-norm embeddings against `num_prototypes` unit-norm prototypes.

    Args:
        num_prototypes: K (SwAV and MIRA: 3000).
        normalize_in_call: normalise the rows in every call, with the gradient
            through the normalisation (MIRA's weight-normalised head). When
            False (SwAV) the stored rows are used as they are, and the method
            calls `normalize()` after each optimizer step.
        pytorch_linear_init: start the stored rows as PyTorch's `nn.Linear`
            weight (uniform on +-1/sqrt(D), rows of length about 1/sqrt(3))
            instead of unit rows. With `normalize_in_call` the scores do not
            change, but the rows' length sets how fast they turn under SGD:
            MIRA's weight-normalised head starts at that length.

    `kernel` is `[K, D]`, one prototype a row, created unit-norm (unless
    `pytorch_linear_init`). It is
    created with ONLY_FIRST_REPLICA aggregation so that `normalize()` may
    assign it from inside a replica: every replica computes the same value
    from the same mirrored weights. The scores are computed in float32 under
    mixed precision: SwAV's Sinkhorn divides them by 0.05 and the losses by 0.1.

    `call(embeddings, frozen=None)`: with a boolean tensor `frozen`, the
    gradient to the prototypes is multiplied by `1 - frozen` while the value is
    unchanged. It is a tensor condition, so one traced train step serves both
    the frozen and the free phase (a Python `if` on the step would be fixed at
    trace time).

    Example:
    >>> layer = Prototypes(5)
    >>> layer(tf.math.l2_normalize(tf.ones((2, 3)), axis=1)).shape
    TensorShape([2, 5])
    """

    def __init__(self, num_prototypes, normalize_in_call=False, pytorch_linear_init=False,
                 **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.num_prototypes = num_prototypes
        self.normalize_in_call = normalize_in_call
        self.pytorch_linear_init = pytorch_linear_init

    def build(self, input_shape):
        dim = int(input_shape[-1])
        # The kernel is [K, D] (nn.Linear's weight layout): its fan-in is D.
        initializer = pytorch_linear.uniform(dim) if self.pytorch_linear_init else _unit_rows
        self.kernel = self.add_weight(
            shape=(self.num_prototypes, dim), initializer=initializer,
            dtype="float32", aggregation="only_first_replica", name="kernel")

    def prototypes(self, frozen=None):
        """The `[K, D]` prototypes as the scores use them."""
        kernel = self.kernel.value
        if frozen is not None:
            # Value: exactly the kernel (x * 1 + x * 0). Gradient: 0 while
            # frozen, 1 afterwards.
            free = 1.0 - tf.cast(frozen, kernel.dtype)
            kernel = free * kernel + (1.0 - free) * tf.stop_gradient(kernel)
        if self.normalize_in_call:
            kernel = tf.math.l2_normalize(kernel, axis=1)
        return kernel

    def call(self, embeddings, frozen=None):
        embeddings = tf.cast(embeddings, tf.float32)
        return tf.matmul(embeddings, self.prototypes(frozen), transpose_b=True)

    def normalize(self):
        """Rescales every stored prototype to unit length (SwAV, after each step)."""
        self.kernel.assign(tf.math.l2_normalize(self.kernel.value, axis=1))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.num_prototypes)

    def get_config(self):
        return {**super().get_config(), "num_prototypes": self.num_prototypes,
                "normalize_in_call": self.normalize_in_call,
                "pytorch_linear_init": self.pytorch_linear_init}

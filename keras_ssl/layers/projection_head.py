"""MLP projection and prediction heads (SimCLR, MoCo v2, BYOL)."""

import keras

from keras_ssl.layers import pytorch_linear


def mlp_head(input_dim, hidden_dims, output_dim, *, batch_norm=True,
             output_batch_norm=False, synchronized_bn=False, pytorch_linear_init=False,
             name="head"):
    """Builds `Dense -> [BN] -> ReLU` for each hidden width, then `Dense`.

    Args:
        input_dim: width of the features fed to the head (built for it).
        hidden_dims: hidden widths, e.g. `(2048,)`; empty for a linear head.
        output_dim: width of the output.
        batch_norm: BatchNorm after each hidden Dense (SimCLR v2, BYOL, MoCo v3);
            MoCo v2's head has none.
        output_batch_norm: BatchNorm without scale/offset on the output too
            (SimCLR's last layer).
        synchronized_bn: statistics over the global batch; the papers sync BN
            across devices in their heads (SimCLR, BYOL).
        pytorch_linear_init: weights and biases start as PyTorch's
            `nn.Linear` does (`keras_ssl.layers.pytorch_linear`), for heads
            whose recipe was tuned in PyTorch at that initialisation (MIRA).
        name: model name.

    Example:
    >>> head = mlp_head(128, (512,), 128)
    >>> head.output_shape
    (None, 128)
    """
    def dense(width, fan_in, use_bias, layer_name):
        if not pytorch_linear_init:
            return keras.layers.Dense(width, use_bias=use_bias, name=layer_name)
        return keras.layers.Dense(width, use_bias=use_bias, name=layer_name,
                                  kernel_initializer=pytorch_linear.uniform(fan_in),
                                  bias_initializer=pytorch_linear.uniform(fan_in))

    layers = [keras.Input((input_dim,))]
    fan_in = input_dim
    for index, width in enumerate(hidden_dims):
        layers.append(dense(width, fan_in, not batch_norm, f"{name}_dense{index}"))
        fan_in = width
        if batch_norm:
            layers.append(keras.layers.BatchNormalization(
                epsilon=1e-5, synchronized=synchronized_bn, name=f"{name}_bn{index}"))
        layers.append(keras.layers.ReLU(name=f"{name}_relu{index}"))
    layers.append(dense(output_dim, fan_in, not output_batch_norm, f"{name}_out"))
    if output_batch_norm:
        layers.append(keras.layers.BatchNormalization(
            epsilon=1e-5, center=False, scale=False, synchronized=synchronized_bn,
            name=f"{name}_out_bn"))
    return keras.Sequential(layers, name=name)

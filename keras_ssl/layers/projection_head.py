"""MLP projection and prediction heads (SimCLR, MoCo v2, BYOL)."""

import keras


def mlp_head(input_dim, hidden_dims, output_dim, *, batch_norm=True,
             output_batch_norm=False, synchronized_bn=False, name="head"):
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
        name: model name.

    Example:
    >>> head = mlp_head(128, (512,), 128)
    >>> head.output_shape
    (None, 128)
    """
    layers = [keras.Input((input_dim,))]
    for index, width in enumerate(hidden_dims):
        layers.append(keras.layers.Dense(width, use_bias=not batch_norm,
                                         name=f"{name}_dense{index}"))
        if batch_norm:
            layers.append(keras.layers.BatchNormalization(
                epsilon=1e-5, synchronized=synchronized_bn, name=f"{name}_bn{index}"))
        layers.append(keras.layers.ReLU(name=f"{name}_relu{index}"))
    layers.append(keras.layers.Dense(output_dim, use_bias=not output_batch_norm,
                                     name=f"{name}_out"))
    if output_batch_norm:
        layers.append(keras.layers.BatchNormalization(
            epsilon=1e-5, center=False, scale=False, synchronized=synchronized_bn,
            name=f"{name}_out_bn"))
    return keras.Sequential(layers, name=name)

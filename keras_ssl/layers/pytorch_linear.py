"""PyTorch's default initialisation of `nn.Linear`, for heads ported from PyTorch code.

`nn.Linear(fan_in, fan_out)` starts its weight and bias uniform in
(-1/sqrt(fan_in), 1/sqrt(fan_in)); Keras' `Dense` starts with Glorot-uniform
weights and zero biases. Behind BatchNorm or an L2 normalisation a layer's
output does not depend on the scale of its weights, but its effective
learning rate does (an SGD step turns the weights by about lr * grad / |w|,
and the gradient itself shrinks as 1 / |w|): Glorot rows of a 512 -> 512 layer are
sqrt(3) times longer than PyTorch's, so under the same optimizer they turn
3 times slower. A short run of a recipe tuned in PyTorch feels that.
"""

import keras


def uniform(fan_in):
    """Uniform on +-1/sqrt(fan_in): nn.Linear's weight (in any layout) and bias."""
    bound = fan_in ** -0.5
    return keras.initializers.RandomUniform(-bound, bound)

"""The spatial size a backbone accepts.

A backbone is built for the training image size, so every variable has its
full shape before training starts (DESIGN.md). Its layers (convolutions,
global pooling) do not depend on the height and width, only Keras' input check
does. Multi-crop methods (SwAV, MIRA) feed one encoder crops of two sizes: the
16-px (96-px) local crops go through the model of the 32-px (224-px) global
ones. Builders take `any_image_size=True` to declare an input of any height and
width; `accept_any_image_size` relaxes an encoder that was built without it.
"""

import keras


def image_input(image_size, *, any_image_size=False, name="images"):
    """The `keras.Input` of a backbone: `[B, S, S, 3]`, or `[B, None, None, 3]`.

    With `any_image_size` the height and width are left undeclared, so Keras
    checks only the rank and the channels of the images it is given, and a
    `.keras` file of the model reloads with the same freedom.
    """
    side = None if any_image_size else image_size
    return keras.Input((side, side, 3), name=name)


def accept_any_image_size(encoder):
    """Lets an encoder built for one image size run on images of another size.

    For encoders built without `any_image_size=True` (by the user, or before
    the option existed): the input check of the encoder, and of every model
    nested in it with a 4-D input, is relaxed to 4-D batches with the same
    channels. Nested models check their own inputs when the outer model runs
    (the `keras:<Application>` backbones wrap the application in an outer
    model), and their sides shrink with the crop too. Models that already
    take any size are left as they are.

    The change is made in place (the weights stay the encoder's) and is not
    saved: a `.keras` file of the encoder reloads with the size it was built
    for. Build with `any_image_size=True` when the saved model must keep it.

    Args:
        encoder: a `keras.Model` from `[B, H, W, C]` images to features.

    Returns:
        `encoder`, which now accepts any H and W.

    Example:
    >>> from keras_ssl.backbones import tiny_backbone
    >>> encoder = accept_any_image_size(tiny_backbone(image_size=32, width=4))
    >>> tuple(encoder(keras.ops.zeros((2, 16, 16, 3))).shape)
    (2, 8)
    """
    for model in _models_within(encoder):
        shape = _image_input_shape(model)
        if shape is not None and (shape[1] is not None or shape[2] is not None):
            axes = {} if shape[-1] is None else {-1: shape[-1]}
            model.input_spec = keras.InputSpec(ndim=4, axes=axes)
    return encoder


def _models_within(model):
    """`model` and every `keras.Model` nested in it, outermost first."""
    yield model
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, keras.Model):
            yield from _models_within(layer)


def _image_input_shape(model):
    """The 4-D shape `model` checks its single input against, else None."""
    specs = model.input_spec
    if specs is None:
        return None
    if not isinstance(specs, (list, tuple)):
        specs = [specs]
    if len(specs) != 1 or specs[0] is None or specs[0].shape is None:
        return None
    shape = tuple(specs[0].shape)
    return shape if len(shape) == 4 else None

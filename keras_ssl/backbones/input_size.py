"""The spatial size a backbone accepts.

A backbone is built for the training image size, so every variable has its
full shape before training starts (DESIGN.md). Its layers (convolutions,
global pooling) do not depend on the height and width, only Keras' input check
does. Multi-crop methods (SwAV, MIRA) feed one encoder crops of two sizes: the
16-px (96-px) local crops go through the model of the 32-px (224-px) global
ones. Builders take `any_image_size=True` to declare an input of any height and
width; `accept_any_image_size` relaxes an encoder that was built without it.

Any size is not every size: a network whose downsampling pads for the sizes
it was built for can shrink a small image's feature map to nothing. Keras'
MobileNetV3Small pads each stride-2 "valid" depthwise convolution as if its
input were even (that is what it computes for a 32-px image, and what it
assumes when the side is unknown), so a 1x1 map there becomes 0x0: its smallest
side is 31 px. TensorFlow then averages an empty map (NaN features) or, with
oneDNN on, returns uninitialised memory. `smallest_image_side` finds that
side from the model's own shape arithmetic, and `MinimumImageSide` makes a
backbone refuse smaller images with a message instead.
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


def smallest_image_side(model, *, limit=4096):
    """The smallest side of square images `model` maps to features.

    Found with Keras' own output-shape arithmetic (no computation runs, so the
    answer does not depend on the kernels, oneDNN or not): a side is too small
    when some valid-padded convolution or pooling of the model, or of a model
    nested in it, would produce an empty map. Sizes grow with the input, so a
    doubling then bisection search needs about 2 log2(side) shape passes. The
    input check of a model built for one size is set aside meanwhile.

    Args:
        model: a `keras.Model` from `[B, H, W, C]` images.
        limit: the largest side tried.

    Returns:
        The smallest side; rectangles need both sides at least this long (the
        height and width shrink independently by the same rules).

    Example:
    >>> from keras_ssl.backbones import tiny_backbone
    >>> smallest_image_side(tiny_backbone(image_size=32, width=4))
    1
    """
    channels = model.inputs[0].shape[-1]
    saved = [(nested, nested.__dict__.get("_manual_input_spec", _UNSET))
             for nested in _models_within(model)]
    for nested, _ in saved:
        nested.input_spec = keras.InputSpec(ndim=4)
    try:
        def fits(side):
            probe = keras.KerasTensor((1, side, side, channels), dtype=model.inputs[0].dtype)
            try:
                outputs = model.compute_output_spec(probe)
            except ValueError:  # "Computed output size would be zero or negative"
                return False
            return all(0 not in tuple(output.shape)
                       for output in keras.tree.flatten(outputs))

        high = 1
        while not fits(high):
            if high >= limit:
                raise ValueError(f"Model {model.name!r} takes no square image of side "
                                 f"<= {limit}.")
            high = min(2 * high, limit)
        low = high // 2  # does not fit (or 0)
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if fits(middle) else (middle, high)
        return high
    finally:
        for nested, spec in saved:
            if spec is _UNSET:
                del nested._manual_input_spec
            else:
                nested.input_spec = spec


_UNSET = object()


@keras.saving.register_keras_serializable(package="keras_ssl")
class MinimumImageSide(keras.layers.Layer):
    """Passes images through, refusing any with a side below `min_side`.

    A backbone whose feature map would vanish on small images puts this layer
    after its input, so a too small crop fails with a message naming the
    backbone and its smallest side, instead of giving NaN or arbitrary
    features. Static sides (eager calls, and traced functions of fixed-size
    crops) are checked when the call is traced; unknown sides by an assertion
    in the graph.

    Args:
        min_side: the smallest height and width accepted.
        backbone: the name the message gives the backbone.
    """

    def __init__(self, min_side, backbone, **kwargs):
        super().__init__(**kwargs)
        self.min_side = int(min_side)
        self.backbone = backbone

    def _message(self, height, width):
        return (f"Backbone {self.backbone!r} takes images of at least "
                f"{self.min_side}x{self.min_side} px; got {height}x{width}: its "
                "feature map would shrink to nothing. Use larger crops.")

    def _check_static(self, shape):
        height, width = shape[1], shape[2]
        if any(side is not None and side < self.min_side for side in (height, width)):
            raise ValueError(self._message(height, width))
        return height is None or width is None

    def call(self, images):
        if self._check_static(tuple(images.shape)) and keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            sides = tf.shape(images)[1:3]
            check = tf.debugging.assert_greater_equal(
                sides, tf.constant(self.min_side, sides.dtype),
                message=self._message("H", "W"))
            with tf.control_dependencies([check]):
                images = tf.identity(images)
        return images

    def compute_output_spec(self, images):
        self._check_static(tuple(images.shape))
        return keras.KerasTensor(images.shape, dtype=images.dtype)

    def get_config(self):
        return {**super().get_config(), "min_side": self.min_side,
                "backbone": self.backbone}

"""PyTorch's nn.Linear initialisation for heads ported from PyTorch (MIRA)."""

import numpy as np

from keras_ssl.layers import Prototypes, mlp_head


def test_head_weights_and_biases_are_uniform_on_one_over_sqrt_fan_in():
    head = mlp_head(64, (512, 512), 256, pytorch_linear_init=True)
    for layer, fan_in in zip([l for l in head.layers if l.name.startswith("head_d")
                              or l.name == "head_out"], (64, 512, 512)):
        kernel = layer.kernel.numpy()
        bound = fan_in ** -0.5
        assert np.abs(kernel).max() <= bound
        # A uniform on +-b has standard deviation b / sqrt(3).
        np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3), rtol=0.05)
    out_bias = head.get_layer("head_out").bias.numpy()
    assert 0 < np.abs(out_bias).max() <= 512 ** -0.5  # random, not zeros
    # Keras' default is Glorot-uniform: a 512 -> 512 kernel sqrt(3) times wider.
    default = mlp_head(64, (512, 512), 256).get_layer("head_dense1").kernel.numpy()
    np.testing.assert_allclose(default.std() / head.get_layer("head_dense1").kernel.numpy().std(),
                               np.sqrt(3), rtol=0.05)


def test_prototype_rows_start_at_pytorch_length_but_score_unit_vectors():
    layer = Prototypes(300, normalize_in_call=True, pytorch_linear_init=True)
    layer.build((None, 256))
    lengths = np.linalg.norm(layer.kernel.numpy(), axis=1)
    np.testing.assert_allclose(lengths.mean(), 1 / np.sqrt(3), rtol=0.05)
    np.testing.assert_allclose(np.linalg.norm(layer.prototypes().numpy(), axis=1), 1.0,
                               rtol=1e-5)
    plain = Prototypes(300)
    plain.build((None, 256))
    np.testing.assert_allclose(np.linalg.norm(plain.kernel.numpy(), axis=1), 1.0, rtol=1e-5)

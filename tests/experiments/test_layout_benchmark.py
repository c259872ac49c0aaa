"""experiments/layout_benchmark.py times the same computation in both layouts."""

import pytest

from experiments.layout_benchmark import conv_stack_step


def test_both_layouts_compute_the_same_gradients_and_time_their_steps():
    # 64 images: with fewer, 16 BatchNorms in a row blow rounding up past 1e-3.
    nhwc = conv_stack_step("NHWC", batch=64, steps=1)
    nchw = conv_stack_step("NCHW", batch=64, steps=1)
    assert nchw["gradient_norm"] == pytest.approx(nhwc["gradient_norm"], rel=1e-3)
    # The gradients depend on the images: other images give another norm.
    assert conv_stack_step("NHWC", batch=64, steps=1, seed=1)["gradient_norm"] != (
        pytest.approx(nhwc["gradient_norm"], rel=1e-3))
    for result in (nhwc, nchw):
        assert result["first_step_seconds"] > 0 and result["step_seconds"] > 0

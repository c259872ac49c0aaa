"""Runs an augmentation the three ways a user can: eagerly, in a `tf.function`,
and inside `tf.data.Dataset.map` (big_vision's `tfrun`, plus the graph mode).

The same stateless seed must give the same numbers in all three: the same
random draws, so the same crops, orders and choices. Values are compared to 1e-6
rather than bit for bit because grappler's arithmetic optimizer may reassociate
float arithmetic inside graphs (it does in the two-pass blur), which moves
results by an ulp.
"""

import numpy as np
import tensorflow as tf

MODES = ("eager", "function", "dataset")


def run_in_modes(fn, *args):
    """Returns ``{mode: result}`` with the result as (nested) NumPy arrays."""
    args = tuple(tf.convert_to_tensor(arg) for arg in args)
    results = {
        "eager": fn(*args),
        "function": tf.function(fn)(*args),
        "dataset": next(iter(tf.data.Dataset.from_tensors(args).map(fn))),
    }
    return {mode: tf.nest.map_structure(np.asarray, out) for mode, out in results.items()}


def assert_modes_agree(fn, *args, atol=1e-6):
    """Checks all modes give the same results; returns the eager one."""
    results = run_in_modes(fn, *args)
    flat = {mode: tf.nest.flatten(out) for mode, out in results.items()}
    for mode in MODES[1:]:
        assert len(flat[mode]) == len(flat["eager"])
        for got, want in zip(flat[mode], flat["eager"]):
            assert got.shape == want.shape, mode
            np.testing.assert_allclose(
                got, want, rtol=0, atol=atol, err_msg=f"{mode} differs from eager"
            )
    return results["eager"]


def random_images(batch_size=4, size=32, seed=0):
    """float32 ``[B, size, size, 3]`` uniform in ``[0, 1]``."""
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(batch_size, size, size, 3)).astype(np.float32)


def seed(a=1, b=2):
    return tf.constant([a, b], tf.int32)

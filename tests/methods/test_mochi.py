"""MoCHi as MoCo v2 with a transform: only keys reach the queue; the warm-up is MoCo."""

import keras
import numpy as np
import tensorflow as tf

from keras_ssl import methods
from keras_ssl.backbones import tiny_backbone
from keras_ssl.losses.hard_negative_mixing import HardNegativeMixing
from keras_ssl.methods import Batch
from tests.methods import harness


def _built(name, **mixing):
    """harness.build(name), with `mixing` over the smoke recipe's MoCHi arguments."""
    config = dict(harness.TINY_CONFIGS[name])
    if mixing:
        (spec,) = config["logit_transforms"]
        config["logit_transforms"] = [{"mochi": {**spec["mochi"], **mixing}}]
    keras.utils.set_random_seed(0)  # as harness.build: same weights for every name
    encoder = tiny_backbone(image_size=16, width=4, norm="sync_batch")
    model = methods.get(name, encoder=encoder, run=harness.RUN, **config)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.optimizer.build(model.update_variables())
    return model


def test_mochi_is_moco_with_the_transform():
    model = _built("mochi")
    assert type(model).__name__ == "MoCo"
    mixing, = model.logit_transforms
    assert isinstance(mixing, HardNegativeMixing)
    assert (mixing.num_hard, mixing.num_mixed, mixing.num_query_mixed) == (4, 6, 2)
    assert {"mochi_synthetic_cosine", "mochi_above_positive"} <= set(model.log_trackers)
    # The preset's defaults: the paper's MoCHi(1024, 1024, 128) on MoCo's defaults.
    default, = methods.get("mochi", encoder=model.encoder).logit_transforms
    assert (default.num_hard, default.num_mixed, default.num_query_mixed) == (1024, 1024, 128)


def test_a_step_enqueues_the_keys_and_nothing_else():
    model = _built("mochi")
    captured = []
    forward = model.forward
    model.forward = lambda batch, ctx: captured.append(forward(batch, ctx)) or captured[-1]
    before = model.queue.read().numpy()
    pointer = int(model.queue.pointer.numpy())
    element = next(iter(harness.batches(1)))
    logs = model.train_step(element)
    assert np.isfinite(float(logs["loss"]))
    after = model.queue.read().numpy()
    batch = harness.GLOBAL_BATCH
    written = (pointer + np.arange(batch)) % model.queue.size
    keys = tf.math.l2_normalize(captured[-1].keys[0], axis=1).numpy()
    np.testing.assert_allclose(after[written], keys, rtol=1e-5, atol=1e-6)
    untouched = np.setdiff1d(np.arange(model.queue.size), written)
    np.testing.assert_array_equal(after[untouched], before[untouched])
    # The pointer moved by the batch of keys, not by keys + synthetic points.
    assert int(model.queue.pointer.numpy()) == (pointer + batch) % model.queue.size


def test_during_the_warm_up_the_loss_is_moco_v2s():
    batch = Batch.from_element(next(iter(harness.batches(1))))

    def loss(model):
        ctx = model.step_context()
        return float(model.loss(model.forward(batch, ctx), ctx)[0])

    moco = loss(_built("moco_v2"))
    warming = loss(_built("mochi", start_step=1))
    mixing = loss(_built("mochi"))
    np.testing.assert_allclose(warming, moco, rtol=1e-6)
    assert mixing > moco + 1e-3


def test_every_recipe_spells_out_the_mixing():
    # Each recipe names every argument of the preset's transform, so
    # methods.get("moco_v2", **recipe["method"]) builds the same model.
    from keras_ssl import configs
    from keras_ssl.configs.common import SCALES

    for scale in SCALES:
        config = configs.get(scale, "mochi")["method"]
        assert methods.PRESETS["mochi"].arguments(config) == config, scale
        mixing, = methods.make_logit_transforms(config["logit_transforms"])
        base = {key: value for key, value in config.items() if key != "logit_transforms"}
        assert base == configs.get(scale, "moco_v2")["method"], scale
        assert mixing.num_hard <= config["queue_size"]

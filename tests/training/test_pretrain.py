"""keras_ssl.training.pretrain from Python: results, config.json, resume, NaN stop, features."""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from keras_ssl import methods
from keras_ssl.fault_tolerance import NonFiniteLossError
from keras_ssl.methods.simclr import SimCLR
from keras_ssl.training import PretrainConfig, load_run_config, pretrain, restore_encoder
from tests.experiments.test_fault_tolerance import newest_checkpoint_number, write_npz

RESULT_KEYS = {"method", "epochs", "epochs_run", "initial_epoch", "train_images",
               "global_batch_size", "replicas", "skipped_files", "loss", "knn_top1",
               "train_seconds", "train_images_per_s", "model_dir", "saved_model",
               "probe_top1", "labeled_images", "initial_step", "steps_run",
               "test_top1"}


@pytest.fixture(scope="module")
def data_spec(tmp_path_factory):
    # 64 images at batch 16: 4 steps an epoch.
    return "npz:" + write_npz(tmp_path_factory.mktemp("data") / "train.npz", 64).as_posix()


def _config(data_spec, model_dir, **changes):
    values = dict(method="simclr", data=data_spec, backbone="tiny", global_batch_size=16,
                  epochs=2, knn_k=5, verbose=0, model_dir=str(model_dir))
    return PretrainConfig(**{**values, **changes})


def _iterations(model_dir):
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    return int(reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"))


def test_a_second_call_resumes_from_the_checkpoint(data_spec, tmp_path):
    config = _config(data_spec, tmp_path / "run")
    # Keyword arguments work as well as a config; stop after the first epoch.
    first = pretrain(**dict(config.to_dict(), epochs=1))
    assert set(first) == RESULT_KEYS
    assert first["epochs_run"] == 1 and first["initial_epoch"] == 0
    assert first["train_images"] == 64 and first["replicas"] == 1
    assert np.isfinite(first["loss"]) and 0.0 <= first["knn_top1"] <= 1.0
    assert _iterations(config.model_dir) == 4

    resumed = pretrain(config)
    assert resumed["initial_epoch"] == 1 and resumed["epochs_run"] == 1
    assert _iterations(config.model_dir) == 8
    # config.json records the arguments of the latest call, for restore_encoder.
    assert load_run_config(config.model_dir) == json.loads(json.dumps(config.to_dict()))
    encoder, restored, *_ = restore_encoder(config.model_dir)
    assert restored["epochs"] == 2 and encoder.output_shape[-1] == 16

    # Past its last epoch a run trains nothing and evaluates the restored encoder.
    again = pretrain(config)
    assert again["epochs_run"] == 0 and again["loss"] is None
    assert again["knn_top1"] == pytest.approx(resumed["knn_top1"])


def test_profile_steps_records_those_steps_for_the_profiler(data_spec, tmp_path):
    from experiments.step_profile import op_seconds, summary

    config = _config(data_spec, tmp_path / "run", epochs=1, profile_steps=(2, 3))
    pretrain(config)
    seconds = op_seconds(os.path.join(config.model_dir, "logs"))
    groups = {row["group"]: row["share"] for row in summary(seconds)}
    # The tiny backbone's convolutions ran forward and backward in the recorded steps.
    assert groups["convolution forward"] > 0 and groups["convolution gradients"] > 0
    assert sum(groups.values()) == pytest.approx(1.0, abs=0.01)
    # Without it nothing is recorded.
    pretrain(_config(data_spec, tmp_path / "plain", epochs=1))
    with pytest.raises(FileNotFoundError, match="no profiler record"):
        op_seconds(os.path.join(tmp_path, "plain", "logs"))


def test_a_nan_loss_stops_the_run_after_the_last_good_checkpoint(data_spec, tmp_path):
    config = _config(data_spec, tmp_path / "run", inject_nan_at_step=6)
    with pytest.raises(NonFiniteLossError) as error:
        pretrain(config)
    assert error.value.global_step == 6 and error.value.epoch == 2
    assert newest_checkpoint_number(config.model_dir) == 1


class _FeatureSimCLR(SimCLR):
    """SimCLR that asks for the training set's features before its first epoch."""

    uses_epoch_features = True
    received = []

    def wants_epoch_features(self, epoch):
        return epoch == 0

    def on_epoch_features(self, features, ctx):
        type(self).received.append(tuple(features.shape))


@pytest.fixture(scope="module")
def feature_run_with_a_label_budget(data_spec, tmp_path_factory):
    """(result, features received) of one epoch with a label budget and the online probe.

    Of `_FeatureSimCLR`, so that one run (a few seconds of tracing) serves
    the feature-pass test and the label-budget test: the features the method
    receives do not depend on the labeled stream, nor the stream on them.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(methods.METHODS, "feature_simclr", _FeatureSimCLR)
        patch.setattr(_FeatureSimCLR, "received", [])
        result = pretrain(_config(data_spec, tmp_path_factory.mktemp("probe") / "run",
                                  method="feature_simclr", epochs=1, labels_per_class=2,
                                  labeled_batch_size=8, probe=True))
        return result, list(_FeatureSimCLR.received)


def test_methods_that_ask_for_epoch_features_receive_them(feature_run_with_a_label_budget):
    _, received = feature_run_with_a_label_budget
    assert received == [(64, 16)]


def test_config_forms_and_errors():
    config = PretrainConfig(method="simclr", data="npz:x.npz")
    assert PretrainConfig.from_dict(config.to_dict()) == config
    assert dataclasses.replace(config, epochs=3).epochs == 3
    with pytest.raises(ValueError, match="imag_size"):
        PretrainConfig.from_dict({"method": "simclr", "data": "npz:x.npz", "imag_size": 8})
    with pytest.raises(ValueError, match="simclr"):
        pretrain(config, method="no_such_method")
    with pytest.raises(TypeError):
        pretrain(["simclr"])


def test_a_label_budget_and_the_online_probe(data_spec, feature_run_with_a_label_budget,
                                            tmp_path):
    result, _ = feature_run_with_a_label_budget
    classes = int(np.load(data_spec[len("npz:"):])["y_train"].max()) + 1
    assert result["labeled_images"] == 2 * classes
    assert 0.0 <= result["probe_top1"] <= 1.0
    with pytest.raises(ValueError, match="one label budget"):
        pretrain(_config(data_spec, tmp_path / "two", labels_per_class=2, label_fraction=0.5))
    with pytest.raises(ValueError, match="needs a label budget"):
        pretrain(_config(data_spec, tmp_path / "none", labeled_batch_size=8))


def test_mixed_precision_on_the_cpu_trains_in_bfloat16_without_loss_scaling(data_spec, tmp_path):
    # float16 is only emulated on CPUs (and needs loss scaling); bfloat16 has
    # float32's exponent range and runs natively where the CPU has avx512_bf16.
    import keras

    from keras_ssl.training import build as build_module

    built = []
    original = build_module.methods.get

    def recording_get(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    build_module.methods.get = recording_get
    try:
        result = pretrain(_config(data_spec, tmp_path / "run", epochs=1, mixed_precision=True))
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        assert not isinstance(built[0].optimizer, keras.optimizers.LossScaleOptimizer)
        assert built[0].encoder.compute_dtype == "bfloat16"
    finally:
        build_module.methods.get = original
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(result["loss"])


def test_init_encoder_starts_the_encoder_and_its_ema_copy_from_a_trained_run(data_spec,
                                                                               tmp_path):
    import functools

    from keras_ssl.methods import RunContext
    from keras_ssl.training import build_method
    from keras_ssl.training.trained_run import load_encoder_weights

    source = _config(data_spec, tmp_path / "simclr", epochs=1)
    pretrain(source)
    trained, *_ = restore_encoder(source.model_dir)

    def build(**changes):
        arguments = dict(method="fixmatch", backbone="tiny", image_size=32, width_multiplier=1.0,
                         run=RunContext(num_examples=64, steps_per_epoch=4, epochs=1, seed=0),
                         optimizer="sgd", learning_rate=0.1, weight_decay=0.0, warmup_steps=0,
                         method_kwargs=dict(num_classes=4),
                         encoder_init=functools.partial(load_encoder_weights,
                                                        path=source.model_dir))
        return build_method(tf.distribute.get_strategy(), **{**arguments, **changes})

    model = build()
    # Weights and BatchNorm statistics, in the online encoder and in the EMA
    # copy FixMatch evaluates with (built from the encoder after the load).
    for copy in (model.encoder, model.ema_encoder):
        assert len(copy.weights) == len(trained.weights)
        for got, want in zip(copy.weights, trained.weights):
            np.testing.assert_array_equal(got.numpy(), want.numpy())
    fresh = build(encoder_init=None)
    assert not all(np.array_equal(a.numpy(), b.numpy())
                   for a, b in zip(fresh.encoder.weights, trained.weights))
    with pytest.raises(ValueError, match="--init_encoder=.*does not match"):
        build(width_multiplier=0.5)


def test_a_resumed_run_does_not_reload_init_encoder(data_spec, tmp_path):
    source = _config(data_spec, tmp_path / "simclr", epochs=1)
    pretrain(source)
    config = _config(data_spec, tmp_path / "again", epochs=2, init_encoder=source.model_dir)
    first = pretrain(dataclasses.replace(config, epochs=1))
    assert first["epochs_run"] == 1
    # The source run is gone: a resume that read it again would fail.
    shutil.rmtree(source.model_dir)
    resumed = pretrain(config)
    assert resumed["initial_epoch"] == 1 and resumed["epochs_run"] == 1

"""pretrain with background augmentation: masks cached beside the run, swaps, shifted kNN."""

import os

import pytest

from keras_ssl.training import PretrainConfig, pretrain
from tests.experiments.test_fault_tolerance import write_npz


@pytest.fixture(scope="module")
def data_spec(tmp_path_factory):
    # 32 images at batch 16: 2 steps; 20 test images for the kNN.
    return "npz:" + write_npz(tmp_path_factory.mktemp("data") / "train.npz", 32).as_posix()


def _config(data_spec, model_dir, **changes):
    values = dict(method="moco_v2", data=data_spec, backbone="tiny", global_batch_size=16,
                  epochs=1, knn_k=5, verbose=0, model_dir=str(model_dir),
                  method_kwargs=dict(queue_size=32, projection_dim=8))
    return PretrainConfig(**{**values, **changes})


@pytest.fixture(scope="module")
def swaps_run(data_spec, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("moco_bg")
    config = _config(data_spec, model_dir, background=("rm", "random", "swaps"),
                     shifted_knn=True)
    return config, pretrain(config)


def test_a_background_run_caches_its_masks_and_reports_the_shifted_knn(swaps_run):
    config, result = swaps_run
    assert 0.0 <= result["knn_top1_background_shifted"] <= 1.0
    masks = os.path.join(config.model_dir, "masks")
    files = sorted(os.listdir(masks))
    assert files == ["test_spectral_masks.npz", "train_spectral_masks.npz"]
    written = {name: os.stat(os.path.join(masks, name)).st_mtime_ns for name in files}
    again = pretrain(config)  # resumes after the last epoch: evaluates only
    assert again["epochs_run"] == 0
    assert again["knn_top1_background_shifted"] == pytest.approx(
        result["knn_top1_background_shifted"])
    assert {name: os.stat(os.path.join(masks, name)).st_mtime_ns for name in files} == written


def test_encoder_masks_from_a_trained_run(swaps_run, data_spec, tmp_path):
    first, _ = swaps_run
    result = pretrain(_config(data_spec, tmp_path, method="byol", method_kwargs={},
                              background=("rm",), saliency=f"encoder:{first.model_dir}"))
    assert result["epochs_run"] == 1
    assert os.listdir(tmp_path / "masks") == ["train_encoder_masks.npz"]


def test_background_errors_name_the_flag(data_spec, tmp_path):
    with pytest.raises(ValueError, match="byol has no negatives"):
        pretrain(_config(data_spec, tmp_path / "a", method="byol", method_kwargs={},
                         background=("swaps",),
                         background_probabilities={"swap_negative": 1.0}))
    with pytest.raises(ValueError, match="--background=rm needs a probability"):
        pretrain(_config(data_spec, tmp_path / "b", method="simclr", method_kwargs={},
                         background=("rm",)))
    with pytest.raises(ValueError, match="--saliency='deep'"):
        pretrain(_config(data_spec, tmp_path / "c", background=("rm",), saliency="deep"))

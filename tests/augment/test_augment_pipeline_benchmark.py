"""Smoke test of experiments/pipeline_benchmark.py on a tiny image folder."""

import numpy as np
from PIL import Image

from experiments import pipeline_benchmark


def _write_folder(root, classes=2, per_class=3, size=16):
    rng = np.random.default_rng(0)
    for label in range(classes):
        folder = root / "train" / f"class_{label}"
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{index:04d}.png")


def test_measure_pipeline_reports_throughput(tmp_path):
    _write_folder(tmp_path)
    images = pipeline_benchmark.load_image_folder(str(tmp_path), 2)
    assert images.shape == (4, 16, 16, 3) and images.dtype == np.uint8

    result = pipeline_benchmark.measure_pipeline(
        "multi_crop",
        str(tmp_path),
        per_class=3,
        batch_size=4,
        image_size=16,
        seconds=0.2,
        warmup_seconds=0.1,
        recipe_kwargs={"num_local": 2, "blur": False},
    )
    assert result["images_per_s"] > 0 and result["batches"] >= 1
    assert result["sizes"] == [16, 16, 8, 8] and result["num_images"] == 6


def test_a_background_recipe_gets_each_images_mask(tmp_path):
    from keras_ssl.augment.background_views import BackgroundConfig

    _write_folder(tmp_path)
    masks = pipeline_benchmark.spectral_masks(str(tmp_path), 3)
    assert masks.shape == (6, 16, 16) and set(np.unique(masks)) <= {0, 255}
    result = pipeline_benchmark.measure_pipeline(
        "moco_v2", str(tmp_path), per_class=3, batch_size=4, image_size=16, seconds=0.2,
        warmup_seconds=0.1, recipe_kwargs={"blur": False},
        background=BackgroundConfig(remove=1.0, swap_positive=1.0, swap_negative=1.0))
    assert result["images_per_s"] > 0 and result["sizes"] == [16, 16]

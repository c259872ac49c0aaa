"""experiments/floor_benchmark.py: kNN of an untrained backbone, on a real image folder."""

import numpy as np
from PIL import Image

from experiments.floor_benchmark import measure_floor


def _write_split(root, split, per_class, rng):
    # Class 0 reddish, class 1 bluish: a random network's features keep colour,
    # so even untrained weights should tell the classes apart.
    for label, colour in enumerate(((200, 40, 40), (40, 40, 200))):
        folder = root / split / f"class_{label}"
        folder.mkdir(parents=True)
        for index in range(per_class):
            noise = rng.integers(-30, 31, (16, 16, 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{index:04d}.png")


def test_random_weights_separate_colours_and_long_tail_shrinks_the_bank(tmp_path):
    rng = np.random.default_rng(0)
    _write_split(tmp_path, "train", 12, rng)
    _write_split(tmp_path, "test", 8, rng)
    kwargs = dict(seed=0, image_size=16, backbone="tiny", width_multiplier=1.0, k=5)

    balanced = measure_floor(str(tmp_path), train_per_class=12, imbalance_ratio=0.0, **kwargs)
    assert balanced["bank_images"] == 24
    assert balanced["knn_top1"] > 0.9

    # Ratio 4 over two classes: 12 and 12 * 4^-1 = 3 images.
    long_tail = measure_floor(str(tmp_path), train_per_class=12, imbalance_ratio=4.0, **kwargs)
    assert long_tail["bank_images"] == 15

"""experiments/mask_report.py: mask figures on synthetic squares, the baselines, the grid."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from experiments import mask_report
from keras_ssl.backbones import tiny_backbone

SIZE = 16


def _write_squares(root, split, per_class, rng):
    """Bright squares near the centre on flat dark backgrounds, two classes.

    Every image has one object, roughly centred (jittered by a pixel), so a
    useful saliency mask must be denser in the centre than at the border.
    """
    for label in range(2):
        folder = root / split / f"class_{label}"
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = np.empty([SIZE, SIZE, 3], np.uint8)
            pixels[:] = rng.integers(0, 80, 3)
            side = int(rng.integers(5, 9))
            top, left = (SIZE - side) // 2 + rng.integers(-1, 2, 2)
            pixels[top:top + side, left:left + side] = rng.integers(170, 256, 3)
            Image.fromarray(pixels).save(folder / f"{index:04d}.png")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One report with a tiny untrained encoder: (results, data folder, work dir, out dir)."""
    root = tmp_path_factory.mktemp("mask_report")
    rng = np.random.default_rng(0)
    data = root / "data"
    _write_squares(data, "train", 12, rng)
    _write_squares(data, "test", 6, rng)
    work_dir, out = root / "work", root / "out"
    results = mask_report.mask_report(
        str(data), str(work_dir), encoder=tiny_backbone(image_size=SIZE, width=4),
        encoder_info={"method": "untrained", "epochs": 0}, train_per_class=10,
        image_size=SIZE, grid_images=4, cell_size=24, seed=0,
        results_path=str(out / "masks.json"), grid_path=str(out / "grid.png"))
    return results, data, work_dir, out


def test_figures_are_written_in_range_and_masks_cached_beside_the_data(report):
    results, data, work_dir, out = report
    with open(out / "masks.json") as f:
        assert json.load(f) == json.loads(json.dumps(results))
    assert results["data"]["images"] == {"train": 20, "test": 12}
    assert results["encoder"] == {"method": "untrained", "epochs": 0}
    for name in ("spectral", "encoder"):
        for split, count in (("train", 20), ("test", 12)):
            r = results["sources"][name][split]
            assert r["images"] == count
            for key in ("foreground_fraction_mean", "centre_fraction", "border_fraction",
                        "centre_box_iou", "centre_box_chance_iou"):
                assert 0.0 <= r[key] <= 1.0, (name, split, key)
            assert 0.0 <= r["foreground_fraction_std"] <= 0.5
            assert sorted(r["quadrant_fractions"]) == sorted(mask_report.QUADRANTS)
            assert all(0.0 <= v <= 1.0 for v in r["quadrant_fractions"].values())
    for split in ("train", "test"):
        for key in ("spectral_vs_encoder_iou", "chance_iou"):
            assert 0.0 <= results["agreement"][split][key] <= 1.0
    assert sorted(os.listdir(work_dir / "masks")) == [
        "test_encoder_masks.npz", "test_spectral_masks.npz",
        "train_encoder_masks.npz", "train_spectral_masks.npz"]
    assert not [name for _, _, files in os.walk(data) for name in files
                if name.endswith(".npz")]

    lines = mask_report.masks_table(results)
    rows = [line for line in lines if line.startswith("| spectral") or
            line.startswith("| encoder")]
    assert len(rows) == 4
    assert "0-epoch untrained run" in "\n".join(lines)


def test_spectral_masks_are_denser_in_the_centre_on_centred_squares(report):
    results = report[0]
    for split in ("train", "test"):
        spectral = results["sources"]["spectral"][split]
        assert spectral["centre_fraction"] > spectral["border_fraction"] + 0.2, spectral
        assert spectral["centre_to_border"] > 1.5
        # The squares are centred, so no quarter of the image is favoured.
        quarters = list(spectral["quadrant_fractions"].values())
        assert max(quarters) - min(quarters) < 0.2, quarters


def test_grid_png_has_one_cell_per_image_and_column(report):
    results, _, _, out = report
    # image, two masks, then BG_RM and BG_Random for each of the two sources.
    assert results["grid"]["columns"][:3] == ["image", "spectral mask", "encoder mask"]
    assert len(results["grid"]["columns"]) == 7
    assert results["grid"]["split"] == "test" and len(results["grid"]["indices"]) == 4
    with Image.open(out / "grid.png") as grid:
        width, height = grid.size
    gap = mask_report.GRID_GAP
    assert (width, height) == (7 * 24 + 6 * gap, 4 * 24 + 3 * gap)


def test_centre_box_baseline():
    box = mask_report.centre_box(SIZE)
    assert box.sum() == (SIZE // 2) ** 2 and box[SIZE // 2, SIZE // 2] and not box[0, 0]
    masks = np.stack([box, box]).astype(np.uint8) * 255
    np.testing.assert_array_equal(mask_report.centre_box_masks(masks), masks > 0)
    stats = mask_report.mask_statistics(masks)
    assert stats["centre_box_iou"] == 1.0
    assert stats["centre_fraction"] == 1.0 and stats["border_fraction"] == 0.0
    assert stats["foreground_fraction_mean"] == 0.25 and stats["foreground_fraction_std"] == 0.0

    # A square in a corner shares nothing with the centred square of its area.
    corner = np.zeros([1, SIZE, SIZE], bool)
    corner[0, :SIZE // 4, :SIZE // 4] = True
    corner_stats = mask_report.mask_statistics(corner)
    assert corner_stats["centre_box_iou"] == 0.0
    # It fills a quarter of the top-left quarter and nothing of the others.
    assert corner_stats["quadrant_fractions"] == {"top_left": 0.25, "top_right": 0.0,
                                                  "bottom_left": 0.0, "bottom_right": 0.0}
    # Empty masks agree with their (empty) box, as keras_ssl.saliency.mask_iou says.
    assert mask_report.per_image_iou(np.zeros([1, 4, 4]), np.zeros([1, 4, 4]))[0] == 1.0
    # A quarter-area mask with no centre bias: 1/16 / (1/2 - 1/16) = 1/7.
    assert stats["centre_box_chance_iou"] == pytest.approx(1 / 7, abs=1e-4)


def test_chance_iou_is_what_unrelated_masks_score():
    rng = np.random.default_rng(0)
    first = rng.random([200, 32, 32]) < 0.4
    second = rng.random([200, 32, 32]) < 0.5
    agreement = mask_report.source_agreement(first.astype(np.uint8) * 255, second)
    assert agreement["chance_iou"] == pytest.approx(0.2 / 0.7, abs=0.01)
    assert agreement["spectral_vs_encoder_iou"] == pytest.approx(agreement["chance_iou"],
                                                                 abs=0.01)
    assert mask_report.source_agreement(first, first)["spectral_vs_encoder_iou"] == 1.0


def test_mask_cache_inside_the_data_folder_is_refused(report):
    _, data, _, out = report
    with pytest.raises(ValueError, match="inside the data folder"):
        mask_report.mask_report(str(data), str(data / "work"), train_per_class=2,
                                image_size=SIZE, results_path=str(out / "refused.json"),
                                grid_path=str(out / "refused.png"))
    assert not (data / "work").exists()

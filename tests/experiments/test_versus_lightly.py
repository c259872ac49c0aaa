"""experiments/versus_lightly.py: the keras_ssl side, the child protocol and the table.

lightly is not a dependency of the project, so these run without it: the
keras_ssl side trains a tiny run in a child process as the benchmark does,
and the table is checked on a result written by hand.
"""

import sys

import numpy as np
from PIL import Image

from experiments import versus_lightly


def _write_folder(root, per_class):
    rng = np.random.default_rng(0)
    for label in range(2):
        folder = root / "train" / f"class_{label}"
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{index:04d}.png")


def test_keras_ssl_side_runs_in_a_child_and_the_table_says_lightly_did_not(tmp_path):
    _write_folder(tmp_path, per_class=8)
    setting = dict(train_per_class=8, epochs=1, global_batch_size=8, width_multiplier=0.5,
                   image_size=16)
    logged = []
    # This interpreter has no lightly, so only keras_ssl runs.
    assert not versus_lightly.lightly_available(sys.executable)
    results = versus_lightly.run(str(tmp_path), lightly_python=sys.executable, repeats=1,
                                 isas=("avx2",), setting=setting,
                                 overrides={"backbone": "tiny"}, log=logged.append)
    summary = results["isas"]["avx2"]
    assert set(summary) == {"keras_ssl"}
    run = summary["keras_ssl"]["runs"][0]
    assert run["isa"] == "avx2" and run["train_images"] == 16
    assert run["images_per_s"] > 0 and np.isfinite(run["loss"])
    assert len(logged) == 1
    lines = versus_lightly.table(results)
    assert lines[2].startswith("| AVX2 only (oneDNN limited) | 1 | ")
    assert lines[2].endswith("| not run | n/a |")
    assert "keras_ssl settings: backbone=tiny." in lines


def test_table_gives_the_ratio_and_the_machine():
    def side(images_per_s, **extra):
        return {"images_per_s": images_per_s, "seconds": 10.0,
                "images_per_s_runs": [images_per_s], "runs": [dict(extra)]}

    results = {
        "setting": versus_lightly.SETTING, "overrides": {},
        "machine": {"cpu": "Test CPU", "cores": 2, "extensions": ["avx2", "avx512f"]},
        "isas": {"native": {"keras_ssl": side(240.0), "ratio": 2.0,
                            "lightly": side(120.0, lightly="1.6.0", torch="2.14.1")},
                 "avx2": {"keras_ssl": side(150.0), "ratio": 2.5,
                          "lightly": side(60.0, lightly="1.6.0", torch="2.14.1")}}}
    lines = versus_lightly.table(results)
    assert lines[2] == "| native | 1 | 240 | 120 | 2.00x |"
    assert lines[3] == "| AVX2 only (oneDNN limited) | 1 | 150 | 60 | 2.50x |"
    assert "Test CPU, 2 cores (avx2, avx512f)" in lines[4]
    assert "3,000 CIFAR-10 images, 2 epochs" in lines[4]
    assert lines[5] == "lightly 1.6.0 on PyTorch 2.14.1."


def test_summary_takes_medians_and_the_ratio_of_medians():
    measured = {"keras_ssl": [{"images_per_s": v, "seconds": 1.0} for v in (100, 300, 200)],
                "lightly": [{"images_per_s": v, "seconds": 2.0} for v in (50, 100, 70)]}
    summary = versus_lightly._summary(measured)
    assert summary["keras_ssl"]["images_per_s"] == 200
    assert summary["lightly"]["images_per_s"] == 70
    assert summary["ratio"] == round(200 / 70, 2)

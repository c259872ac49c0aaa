"""benchmark.py --what=semi_supervised|continual: every row's recipe, runs and tables."""

import numpy as np
import pytest

from experiments import semi_supervised_benchmark as semi
from keras_ssl.training import pretrain
from tests.experiments.test_fault_tolerance import write_npz


@pytest.mark.parametrize("row", list(semi.ROWS))
def test_every_row_is_156_steps_of_64_labelled_images_with_a_fast_ema(row, tmp_path):
    _, kwargs = semi.row_config(row, 4, seed=1, data="DATA", work_dir=str(tmp_path))
    steps = 10_000 // kwargs["global_batch_size"] * kwargs["epochs"]
    assert (steps, kwargs["labeled_batch_size"]) == (156, 64)
    assert kwargs["method_kwargs"]["ema_decay"] == semi.EMA_DECAY
    assert kwargs["hide_labels"] and kwargs["seed"] == 1
    if row == "fixmatch_usl":
        assert kwargs["label_indices"].endswith("usl_40.txt") and "labels_per_class" not in kwargs
    else:
        assert kwargs["labels_per_class"] == 4
    if row == "supervised":
        assert kwargs["method_kwargs"]["unlabeled_weight"] == 0.0
    if row == "hiermatch_fixmatch":  # FixMatch's SGD streams, one weak and one strong view
        assert kwargs["optimizer"] == "sgd" and kwargs["learning_rate"] == 0.03
        assert kwargs["view_kwargs"] == {"num_weak": 1, "num_strong": 1}
        assert kwargs["method_kwargs"]["threshold"] == 0.95
    assert ("init_encoder" in kwargs) == (row == "fixmatch_from_simclr")


def test_hiermatch_on_fixmatch_a_row_of_its_own_wiring_trains(tmp_path):
    # The one row whose method, streams and views come from three recipes.
    # (init_encoder, fixmatch_from_simclr's own piece, is tested in
    # tests/training/test_pretrain.py.)
    data = "npz:" + write_npz(tmp_path / "ten.npz", 80).as_posix()
    _, kwargs = semi.row_config("hiermatch_fixmatch", 2, seed=0, data=data,
                                work_dir=str(tmp_path))
    result = pretrain(**{**kwargs, **dict(backbone="tiny", global_batch_size=16,
                                          labeled_batch_size=8, epochs=1, train_per_class=0,
                                          knn_k=5, verbose=0)})
    assert result["labeled_images"] == 20 and 0.0 <= result["test_top1"] <= 1.0


def test_the_tables_give_mean_and_spread_over_the_seeds_there_are():
    run = lambda top1: {"test_top1": top1, "knn_top1": 0.5}  # noqa: E731
    results = {"fixmatch": {"40": {"0": run(0.2), "1": run(0.3)}, "250": {"0": run(0.5)}},
               "usl_picks": {"indices": list(range(40)), "per_class": [40] + [0] * 9}}
    lines = semi.semi_supervised_table(results)
    assert "| fixmatch | 25.0% ± 7.1 | 2 | 50.0% | 1 | 50.0% ± 0.0 / 50.0% |" in lines
    assert not any(line.startswith("| supervised") for line in lines)  # not measured: no row
    assert "per class: 40, 0, 0, 0, 0, 0, 0, 0, 0, 0" in lines[-1]
    continual = semi.continual_table({"nncsl": {"0": {"task_test_top1": [0.9, 0.5, 0.4, 0.3,
                                                                         0.2]}}})
    assert continual[-1] == "| nncsl | 1 | 90.0% | 50.0% | 40.0% | 30.0% | 20.0% |"
    assert semi.mean_std(np.array([])) == "-"

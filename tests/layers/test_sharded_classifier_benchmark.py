"""experiments/sharded_classifier_benchmark.py on one replica, at test size."""

from experiments.sharded_classifier_benchmark import measure_sharded_classifier


def test_one_case_reports_time_and_state_per_replica():
    result = measure_sharded_classifier(300, 1, dim=8, global_batch=16, steps=1, warmup=1, k=3)
    assert result["shard_size"] == 300 and result["step_ms"] > 0
    # Weights and momentum, 300 x 8 float32 each, on the one device.
    assert result["state_bytes_per_replica"] == 2 * 300 * 8 * 4

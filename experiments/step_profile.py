"""Where a training step's time goes: TensorFlow's profiler, summed by op type.

    python experiments/step_profile.py --data=../shared/data/cifar10

Runs the setting of versus_lightly.py (keras_ssl's BYOL, 3,000 CIFAR-10
images, 2 epochs, batch 256, ResNet-18 at width 0.25, `--fused_batch_norm`),
records `--steps` (steady steps, after the first) with `profile_steps`, and
sums the recorded op executions by op type: the share of the step each kind
of op takes, on this machine's CPU. Op time is summed over the threads that
run ops in parallel, so it exceeds the wall time of the steps (about 2x on 2
cores when both are busy). Results go to experiments/results/step_profile.json
and the README table between the `step_profile` markers.

`op_seconds` reads any `profile_steps` record, e.g. a run of train.py with
`--profile_steps=FIRST,LAST` (the record is in its `--model_dir/logs/train`).
"""

import argparse
import collections
import glob
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # also run as a script: the checkout's root holds `experiments`

from experiments import versus_lightly  # noqa: E402
from experiments.machine import machine  # noqa: E402
from experiments.readme_tables import replace_between  # noqa: E402

RESULTS = os.path.join(ROOT, "experiments", "results", "step_profile.json")
START, END = "<!-- step_profile:start -->", "<!-- step_profile:end -->"
def op_seconds(log_dir):
    """Seconds of op execution by op type in the newest profiler record under `log_dir`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    records = sorted(glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"), recursive=True))
    if not records:
        raise FileNotFoundError(f"no profiler record (*.xplane.pb) under {log_dir}")
    space = xplane_pb2.XSpace()
    with open(records[-1], "rb") as file:
        space.ParseFromString(file.read())
    seconds = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            # TensorFlow's executor threads; an op event names its type in
            # display_name (the executor's own events have none).
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                op_type = plane.event_metadata[event.metadata_id].display_name
                if op_type:
                    seconds[op_type] += event.duration_ps * 1e-12
    return dict(seconds)


def group_of(op_type):
    """The summary row of `op_type` (oneDNN's `_MklNative`/`_Mkl` prefixes dropped)."""
    base = op_type.removeprefix("_MklNative").removeprefix("_Mkl")
    if base == "Conv2D":
        return "convolution forward"
    if base.startswith("Conv2DBackprop"):
        return "convolution gradients"
    if base.startswith("FusedBatchNorm"):
        return "BatchNorm (fused) forward and gradient"
    if base.endswith("MatMul"):
        return "matrix products (heads)"
    return "other (element-wise, optimizer, EMA, reads)"


def summary(seconds):
    """Seconds and share of the op time by group, largest first."""
    total = sum(seconds.values())
    groups = collections.Counter()
    for op_type, value in seconds.items():
        groups[group_of(op_type)] += value
    return [{"group": group, "seconds": round(value, 3), "share": round(value / total, 3)}
            for group, value in groups.most_common()]


def run(data, steps=(6, 9)):
    """Profiles `steps` of the versus_lightly run; the results dict (also written to RESULTS)."""
    with tempfile.TemporaryDirectory() as model_dir:
        result = versus_lightly.keras_ssl_run(
            data, **versus_lightly.SETTING, model_dir=model_dir,
            overrides={"fused_batch_norm": True, "profile_steps": tuple(steps)})
        seconds = op_seconds(os.path.join(model_dir, "logs"))
    profiled = steps[1] - steps[0] + 1
    results = {"machine": machine(), "setting": versus_lightly.SETTING, "steps": list(steps),
               "run": result, "op_seconds_per_step": round(sum(seconds.values()) / profiled, 3),
               "groups": summary(seconds),
               "op_types": {op: round(value, 4) for op, value in
                            sorted(seconds.items(), key=lambda item: -item[1])}}
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as file:
        json.dump(results, file, indent=1)
    return results


def table(results):
    """The README lines of a results dict."""
    lines = ["| ops | op seconds per step | share of op time |", "| --- | --- | --- |"]
    profiled = results["steps"][1] - results["steps"][0] + 1
    for row in results["groups"]:
        lines.append(f"| {row['group']} | {row['seconds'] / profiled:.3f} | "
                     f"{100 * row['share']:.0f}% |")
    machine_ = results["machine"]
    lines += ["", f"Steps {results['steps'][0]}-{results['steps'][1]} of the versus_lightly "
                  f"run (images/s of that run: {results['run']['images_per_s']}), "
                  f"{machine_['cpu']}, {machine_['cores']} cores "
                  f"({', '.join(machine_['extensions'])})."]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "cifar10"))
    parser.add_argument("--steps", default="6,9", help="FIRST,LAST 1-based steps to record")
    options = parser.parse_args()
    results = run(options.data, tuple(int(step) for step in options.steps.split(",")))
    lines = table(results)
    replace_between(START, END, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

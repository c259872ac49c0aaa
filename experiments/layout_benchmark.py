"""Channels-last against channels-first for the CPU protocol's convolutions.

    python experiments/layout_benchmark.py --repeats=2

Issue 17 asks whether channels-first (NCHW) trains faster on CPUs than the
channels-last (NHWC) layout keras_ssl builds. Changing the backbone's layout
touches every layer (BatchNorm axis, pooling, the input standardisation), so
this measures the part the layout decides: the ResNet-18 at width 0.25's 3x3
convolutions on 32-px images (16, 32, 64, 128 channels at 32, 16, 8, 4 px,
4 convolutions a stage, the first of stages 2-4 with stride 2), each followed
by the fused BatchNorm in training mode and a ReLU, forward and backward on
512 images (BYOL's two views of a 256 batch), the same ops in both layouts.
Each layout runs in its own fresh process, alternating, once on the machine's
own instruction set and once with oneDNN limited to AVX2 (as
versus_lightly.py emulates an AVX2-only CPU); a run reports its first step
(tracing, graph set-up, oneDNN's kernel creation) and its mean steady step
over `--steps` steps. Results go to experiments/results/layout.json and the
README table between the `layout` markers.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # also run as a script: the checkout's root holds `experiments`

from experiments.machine import machine  # noqa: E402
from experiments.readme_tables import replace_between  # noqa: E402
from experiments.versus_lightly import ISAS  # noqa: E402
RESULTS = os.path.join(ROOT, "experiments", "results", "layout.json")
START, END = "<!-- layout:start -->", "<!-- layout:end -->"
LAYOUTS = ("NHWC", "NCHW")
# (channels, side) of each stage of ResNet-18 at width 0.25 on 32-px images.
STAGES = ((16, 32), (32, 16), (64, 8), (128, 4))
CONVS_PER_STAGE = 4


def conv_stack_step(layout, *, batch=512, steps=10, seed=0):
    """First and mean steady seconds of a forward+backward step of the stack in `layout`."""
    import tensorflow as tf

    tf.random.set_seed(seed)
    layers, channels_in = [], 3
    for stage, (channels, _) in enumerate(STAGES):
        for index in range(CONVS_PER_STAGE):
            stride = 2 if index == 0 and stage > 0 else 1
            kernel = tf.Variable(tf.random.normal([3, 3, channels_in, channels]) * 0.1)
            layers.append((kernel, tf.Variable(tf.ones([channels])),
                           tf.Variable(tf.zeros([channels])), stride))
            channels_in = channels
    variables = [variable for layer in layers for variable in layer[:3]]

    def strides(stride):
        return [1, 1, stride, stride] if layout == "NCHW" else [1, stride, stride, 1]

    @tf.function
    def step(images):
        with tf.GradientTape() as tape:
            x = images
            for kernel, scale, offset, stride in layers:
                x = tf.nn.conv2d(x, kernel, strides(stride), "SAME", data_format=layout)
                x = tf.compat.v1.nn.fused_batch_norm(x, scale, offset, data_format=layout,
                                                     is_training=True)[0]
                x = tf.nn.relu(x)
            loss = tf.reduce_mean(x)
        return loss, tf.linalg.global_norm(tape.gradient(loss, variables))

    side = STAGES[0][1]
    # The same images in both layouts, so both compute the same gradients.
    images = tf.random.uniform([batch, side, side, 3])
    if layout == "NCHW":
        images = tf.transpose(images, [0, 3, 1, 2])
    start = time.perf_counter()
    gradient_norm = float(step(images)[1].numpy())
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step(images)[0].numpy()
    return {"gradient_norm": gradient_norm, "first_step_seconds": round(first, 3),
            "step_seconds": round((time.perf_counter() - start) / steps, 4)}


def measure(layout, isa, steps):
    """`layout`'s run in a fresh process with `isa`'s environment: its result dict."""
    command = [sys.executable, os.path.abspath(__file__), f"--child={layout}",
               f"--steps={steps}"]
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, **ISAS[isa]))
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    if run.returncode or not lines:
        raise RuntimeError(f"the {layout} run failed:\n{run.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def run(repeats=2, steps=10, log=print):
    """Both layouts on both ISAs, alternating, `repeats` times; medians, written to RESULTS."""
    runs = {isa: {layout: [] for layout in LAYOUTS} for isa in ISAS}
    for repeat in range(repeats):
        order = LAYOUTS if repeat % 2 == 0 else LAYOUTS[::-1]
        for isa in ISAS:
            for layout in order:
                runs[isa][layout].append(measure(layout, isa, steps))
                log(json.dumps({"isa": isa, "layout": layout, **runs[isa][layout][-1]}))
    medians = {isa: {layout: {key: statistics.median(r[key] for r in results)
                              for key in ("first_step_seconds", "step_seconds")}
                     for layout, results in by_layout.items()}
               for isa, by_layout in runs.items()}
    result = {"machine": machine(), "repeats": repeats, "steps": steps, "medians": medians,
              "nchw_step_over_nhwc": {
                  isa: round(m["NCHW"]["step_seconds"] / m["NHWC"]["step_seconds"], 2)
                  for isa, m in medians.items()},
              "runs": runs}
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as file:
        json.dump(result, file, indent=1)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each layout")
    parser.add_argument("--steps", type=int, default=10, help="steady steps timed per run")
    parser.add_argument("--child", choices=LAYOUTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(conv_stack_step(args.child, steps=args.steps)))
        return
    lines = table(run(args.repeats, args.steps))
    replace_between(START, END, lines)
    print("\n".join(lines))


def table(result):
    """The README lines of a results dict."""
    names = {"native": "native", "avx2": "AVX2 only (oneDNN limited)"}
    lines = ["| CPU instruction set | NHWC step s | NCHW step s | NCHW / NHWC | "
             "NHWC first step s | NCHW first step s |", "| --- | --- | --- | --- | --- | --- |"]
    for isa, medians in result["medians"].items():
        nhwc, nchw = medians["NHWC"], medians["NCHW"]
        lines.append(f"| {names.get(isa, isa)} | {nhwc['step_seconds']:.3f} | "
                     f"{nchw['step_seconds']:.3f} | {result['nchw_step_over_nhwc'][isa]:.2f}x | "
                     f"{nhwc['first_step_seconds']:.2f} | {nchw['first_step_seconds']:.2f} |")
    machine_ = result["machine"]
    lines += ["", f"Medians of {result['repeats']} runs each, {result['steps']} steady steps "
                  f"a run; {machine_['cpu']}, {machine_['cores']} cores "
                  f"({', '.join(machine_['extensions'])})."]
    return lines


if __name__ == "__main__":
    main()

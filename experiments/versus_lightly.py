"""keras_ssl's BYOL beside lightly's, in one run, on each CPU instruction set.

    python experiments/benchmark.py --what=versus_lightly --data=../shared/data/cifar10 \
        --lightly_python=/tmp/lightly_venv/bin/python --repeats=3

The setting is issue 17's: the first 300 training images of each CIFAR-10
class (3,000), two epochs, batch 256, ResNet-18 with the CIFAR stem at width
0.25, 32-px views without blur. Each side trains the whole run from scratch
in a fresh process and reports images/s over its two epochs, the way the CPU
protocol counts them (optimizer steps x batch, views counted once, the first
step's tracing included: on runs this short it is part of what a user waits for).

- keras_ssl: `keras_ssl.training.pretrain(method="byol")` with the
  `cifar10_cpu_small` preset, on the `train/` folder alone (no kNN at the end).
- lightly: the BYOL model of lightly's CIFAR-10 benchmark
  (docs/source/getting_started/benchmarks/cifar10_benchmark.py):
  `ResNetGenerator("resnet-18", width=0.25)` without its classifier, then an
  adaptive average pool; `BYOLProjectionHead(128, 1024, 256)`,
  `BYOLPredictionHead(256, 1024, 256)`; momentum copies of backbone and
  projector updated with m = 0.99 before each step; the loss 0.5 (NegCos(p0,
  z1) + NegCos(p1, z0)); SGD 0.06 x 256 / 128, momentum 0.9, weight decay
  5e-4, cosine over the epochs; `SimCLRTransform(input_size=32,
  cj_strength=0.5, gaussian_blur=0)` (its collate function's defaults). What
  differs from that script: a plain PyTorch loop instead of the Lightning
  trainer (no kNN callback, no logging), 2 loader workers and 2 threads (the
  CPU protocol of published-results.md, not 8 workers and a GPU), and the
  3,000 images decoded once into memory before the clock starts (lightly's
  dataset decodes every file each epoch), which can only make lightly faster.

The two sides alternate (lightly first on even repeats, keras_ssl first on odd
ones), so a drift of a shared machine's speed lands on both alike. Each runs
once on the machine's own instruction set and once with oneDNN limited to
AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2` for both TensorFlow's and PyTorch's oneDNN,
`ATEN_CPU_CAPABILITY=avx2` for PyTorch's own kernels), the stand-in for an
AVX2-only CPU. TensorFlow's Eigen kernels are built for AVX and are the same
either way.

A child run is this file as a script, `--child=keras_ssl|lightly --args=JSON`;
the lightly child imports nothing of keras_ssl, TensorFlow or absl, so it runs
in lightly's own interpreter.
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

# Also run as a script: the checkout's root holds `keras_ssl` and `experiments`.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Environment of each CPU type the benchmark emulates; "native" is the machine's own.
ISAS = {"native": {},
        "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}}
# Issue 17's setting.
SETTING = dict(train_per_class=300, epochs=2, global_batch_size=256, width_multiplier=0.25,
               image_size=32)
SIDES = ("lightly", "keras_ssl")
RESULTS = os.path.join(ROOT, "experiments", "results", "versus_lightly.json")
# keras_ssl with its defaults, beside a run with `overrides`.
DEFAULTS_SIDE = "keras_ssl_defaults"


def keras_ssl_run(data, *, train_per_class, epochs, global_batch_size, width_multiplier,
                  image_size, overrides=None, model_dir=None):
    """One BYOL run of keras_ssl under the CPU-protocol preset; its images/s and seconds.

    The run's folder is `model_dir`, or a temporary one deleted after it.
    """
    sys.path.insert(0, ROOT)
    from keras_ssl import configs
    from keras_ssl.training import pretrain
    entry = configs.get("cifar10_cpu_small", "byol")
    flags = dict(entry["flags"], train_per_class=train_per_class, epochs=epochs,
                 global_batch_size=global_batch_size, width_multiplier=width_multiplier,
                 image_size=image_size, **(overrides or {}))
    folder = (contextlib.nullcontext(model_dir) if model_dir is not None
              else tempfile.TemporaryDirectory())
    with folder as run_dir:
        result = pretrain(method="byol", data=_train_folder(data), model_dir=run_dir,
                          verbose=0, method_kwargs=entry["method"],
                          view_kwargs=entry["views"], **flags)
    return {"images_per_s": result["train_images_per_s"],
            "seconds": result["train_seconds"], "train_images": result["train_images"],
            "loss": result["loss"], "overrides": dict(overrides or {})}


def lightly_run(data, *, train_per_class, epochs, global_batch_size, width_multiplier,
                image_size, num_workers=2, threads=2, seed=0):
    """One BYOL run of lightly's CIFAR-10 benchmark model (see the module docstring)."""
    import copy

    import lightly
    import torch
    from lightly.loss import NegativeCosineSimilarity
    from lightly.models import ResNetGenerator
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.transforms import SimCLRTransform
    from PIL import Image

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    images = []
    for name in _class_folders(_train_folder(data)):
        for file in sorted(os.listdir(name))[:train_per_class]:
            with Image.open(os.path.join(name, file)) as image:
                images.append(image.convert("RGB"))
    transform = SimCLRTransform(input_size=image_size, cj_strength=0.5, gaussian_blur=0.0)

    class Views(torch.utils.data.Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, index):
            return transform(images[index])

    loader = torch.utils.data.DataLoader(Views(), batch_size=global_batch_size, shuffle=True,
                                         drop_last=True, num_workers=num_workers)
    resnet = ResNetGenerator("resnet-18", width=width_multiplier)
    backbone = torch.nn.Sequential(*list(resnet.children())[:-1],
                                   torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    feature_dim = resnet.linear.in_features
    projector = BYOLProjectionHead(feature_dim, 1024, 256)
    predictor = BYOLPredictionHead(256, 1024, 256)
    target_backbone, target_projector = copy.deepcopy(backbone), copy.deepcopy(projector)
    deactivate_requires_grad(target_backbone)
    deactivate_requires_grad(target_projector)
    criterion = NegativeCosineSimilarity()
    parameters = [*backbone.parameters(), *projector.parameters(), *predictor.parameters()]
    optimizer = torch.optim.SGD(parameters, lr=0.06 * global_batch_size / 128, momentum=0.9,
                                weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)

    def online(x):
        return predictor(projector(backbone(x)))

    def target(x):
        return target_projector(target_backbone(x)).detach()

    steps = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for x0, x1 in loader:
            update_momentum(backbone, target_backbone, m=0.99)
            update_momentum(projector, target_projector, m=0.99)
            loss = 0.5 * (criterion(online(x0), target(x1)) + criterion(online(x1), target(x0)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
        schedule.step()
    seconds = time.perf_counter() - start
    return {"images_per_s": round(steps * global_batch_size / seconds, 1),
            "seconds": round(seconds, 2), "train_images": len(images), "loss": loss.item(),
            "torch": torch.__version__, "lightly": lightly.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _train_folder(data):
    """The `train/` split of an image folder (the whole folder if it has none)."""
    train = os.path.join(data, "train")
    return train if os.path.isdir(train) else data


def _class_folders(folder):
    return [os.path.join(folder, name) for name in sorted(os.listdir(folder))
            if os.path.isdir(os.path.join(folder, name))]


def measure(side, data, isa, *, python=None, setting=None, overrides=None):
    """`side`'s run in a fresh process with `isa`'s environment; its result dict."""
    args = dict(SETTING if setting is None else setting, data=os.path.abspath(data))
    if side == "keras_ssl" and overrides:
        args["overrides"] = overrides
    env = dict(os.environ, **ISAS[isa])
    child = "lightly" if side == "lightly" else "keras_ssl"
    command = [python or sys.executable, os.path.abspath(__file__), f"--child={child}",
               f"--args={json.dumps(args)}"]
    run = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    if run.returncode or not lines:
        raise RuntimeError(f"the {side} run ({isa}) failed:\n{run.stderr[-3000:]}")
    return dict(json.loads(lines[-1][len("RESULT "):]), isa=isa)


def lightly_available(python):
    """Whether `python` (an interpreter path, or None for this one) can import lightly."""
    check = subprocess.run([python or sys.executable, "-c", "import lightly, torchvision"],
                           capture_output=True)
    return check.returncode == 0


def run(data, *, lightly_python=None, repeats=1, isas=tuple(ISAS), setting=None,
        overrides=None, with_defaults=False, log=print):
    """Both sides, alternating, `repeats` times on each ISA; the results as a dict.

    Without lightly (neither `lightly_python` nor this interpreter imports
    it) only keras_ssl runs and the lightly columns stay empty. keras_ssl
    runs with `overrides` of its preset's flags (e.g. `{"fused_batch_norm":
    True}`), and with `with_defaults` also without them, as a third side.
    """
    sides = SIDES if lightly_available(lightly_python) else ("keras_ssl",)
    if with_defaults and overrides:
        sides += (DEFAULTS_SIDE,)
    runs = {isa: {side: [] for side in sides} for isa in isas}
    for repeat in range(repeats):
        for isa in isas:
            for side in (sides if repeat % 2 == 0 else sides[::-1]):
                measured = measure(side, data, isa, setting=setting,
                                   python=lightly_python if side == "lightly" else None,
                                   overrides=overrides if side == "keras_ssl" else None)
                runs[isa][side].append(measured)
                log(json.dumps({"repeat": repeat, "side": side, **measured}))
    from experiments.machine import machine
    return {"setting": dict(SETTING if setting is None else setting),
            "overrides": dict(overrides or {}), "machine": machine(),
            "isas": {isa: _summary(by_side) for isa, by_side in runs.items()}}


def _summary(by_side):
    """Medians of each side's images/s and seconds, their runs, and keras_ssl / lightly."""
    summary = {}
    for side, measured in by_side.items():
        summary[side] = {"images_per_s": statistics.median(m["images_per_s"] for m in measured),
                         "seconds": statistics.median(m["seconds"] for m in measured),
                         "images_per_s_runs": [m["images_per_s"] for m in measured],
                         "runs": measured}
    if "lightly" in summary:
        summary["ratio"] = round(summary["keras_ssl"]["images_per_s"]
                                 / summary["lightly"]["images_per_s"], 2)
    return summary


def table(results):
    """README lines: one row per ISA, then the machine and what each side ran."""
    defaults = any(DEFAULTS_SIDE in summary for summary in results["isas"].values())
    header = ["CPU instruction set", "runs", "keras_ssl images/s", "lightly images/s",
              "keras_ssl / lightly"]
    if defaults:
        header += ["keras_ssl defaults images/s", "defaults / lightly"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    names = {"native": "native", "avx2": "AVX2 only (oneDNN limited)"}
    for isa, summary in results["isas"].items():
        ours, peer = summary["keras_ssl"], summary.get("lightly")
        peer_text = f"{peer['images_per_s']:.0f}" if peer else "not run"
        ratio = f"{summary['ratio']:.2f}x" if "ratio" in summary else "n/a"
        row = [names.get(isa, isa), str(len(ours["images_per_s_runs"])),
               f"{ours['images_per_s']:.0f}", peer_text, ratio]
        if defaults:
            base = summary.get(DEFAULTS_SIDE)
            row += ([f"{base['images_per_s']:.0f}",
                     f"{base['images_per_s'] / peer['images_per_s']:.2f}x" if peer else "n/a"]
                    if base else ["", ""])
        lines.append("| " + " | ".join(row) + " |")
    machine, setting = results["machine"], results["setting"]
    lines.append(
        f"\nMeasured on {machine['cpu']}, {machine['cores']} cores "
        f"({', '.join(machine['extensions']) or 'no AVX2'}); BYOL, "
        f"{setting['train_per_class'] * 10:,} CIFAR-10 images, {setting['epochs']} epochs, "
        f"batch {setting['global_batch_size']}, ResNet-18 at width "
        f"{setting['width_multiplier']}, {setting['image_size']} px; images/s of the whole "
        "run, first step included (medians over the runs).")
    peer_run = next((s["lightly"]["runs"][0] for s in results["isas"].values()
                     if "lightly" in s), None)
    if peer_run:
        lines.append(f"lightly {peer_run['lightly']} on PyTorch {peer_run['torch']}.")
    if results.get("overrides"):
        lines.append("keras_ssl settings: " + ", ".join(
            f"{key}={value}" for key, value in sorted(results["overrides"].items())) + ".")
    return lines


def run_and_record(data, *, path=RESULTS, **kwargs):
    """`run(data, **kwargs)`, its results written to `path` (JSON); the README lines."""
    results = run(data, **kwargs)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as file:
        json.dump(results, file, indent=2, sort_keys=True)
    return table(results)


def main(argv):
    """The benchmark alone, or (with `--child`) one side's run; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=SIDES, help="Run one side here and print it.")
    parser.add_argument("--args", help="--child: JSON keyword arguments of the run.")
    parser.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "cifar10"))
    parser.add_argument("--lightly_python", help="An interpreter that imports lightly.")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--fused_batch_norm", action="store_true",
                        help="keras_ssl's backbone BatchNorm through the fused kernel, "
                             "beside a run with the defaults.")
    options = parser.parse_args(argv)
    if options.child:
        kwargs = json.loads(options.args)
        data = kwargs.pop("data")
        side_run = keras_ssl_run if options.child == "keras_ssl" else lightly_run
        print("RESULT " + json.dumps(side_run(data, **kwargs)), flush=True)
        return
    sys.path.insert(0, ROOT)
    overrides = {"fused_batch_norm": True} if options.fused_batch_norm else None
    print("\n".join(run_and_record(options.data, lightly_python=options.lightly_python,
                                   repeats=options.repeats, overrides=overrides,
                                   with_defaults=bool(overrides))))


if __name__ == "__main__":
    main(sys.argv[1:])
